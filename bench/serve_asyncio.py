"""`sessiongraph`, run as it runs where uvloop is not installed: uvicorn falls back to asyncio.

    python -m bench.serve_asyncio serve --port 8000 --workers 2

bench.http uses it to check single-request latency on asyncio's own event loop. uvicorn's
worker processes import this module again (multiprocessing spawns them), so they too run
without uvloop.
"""

from __future__ import annotations

import sys

# A None entry makes `import uvloop` raise ImportError, as if it were not installed.
sys.modules["uvloop"] = None  # type: ignore[assignment]

if __name__ == "__main__":
    from sessiongraph.cli import main

    sys.exit(main(sys.argv[1:]))
