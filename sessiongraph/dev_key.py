"""The development API key that `make run` prints, kept across restarts.

Only a hash of every key is stored in the database, so the development key itself is kept
in a local file (readable by its owner only) next to the embedded database's data.
"""

from __future__ import annotations

import os

from sessiongraph.settings import Settings
from storage import ApiKeyStore

DEV_ORG = "dev"
DEV_TOKEN_SECRET_FILE = "dev-token-secret"
"""The development token secret's file, in the development key's directory."""


async def development_key(keys: ApiKeyStore, settings: Settings) -> str:
    """The key in the development key file if it still works, else a new one saved there."""
    path = settings.dev_key_file
    if path.exists():
        key = path.read_text().strip()
        if await keys.organization_of(key) is not None:
            return key
    _, key = await keys.create(DEV_ORG, name="development key")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


async def announce_development_key(keys: ApiKeyStore, settings: Settings) -> None:
    """Print where GraphiQL (and the console) is and a key to use there."""
    key = await development_key(keys, settings)
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        "",
        "  sessiongraph is starting on the embedded database.",
        f"  GraphiQL:        {base}/graphql",
        f"  Development key: {key}   (organization {DEV_ORG!r})",
        '  In GraphiQL, open Headers and paste: {"Authorization": "Bearer ' + key + '"}',
    ]
    if settings.console:
        lines.append(f"  Live console:    {base}/console")
    print("\n".join(lines) + "\n", flush=True)
