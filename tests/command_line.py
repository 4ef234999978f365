"""Running the `sessiongraph` command as a user runs it: a subprocess of its own."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

SESSIONGRAPH = Path(sys.executable).parent / "sessiongraph"
"""The command as installed in the virtual environment."""


async def sessiongraph(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command to completion off the event loop, where the server is serving."""
    return await asyncio.to_thread(
        subprocess.run,
        [str(SESSIONGRAPH), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
