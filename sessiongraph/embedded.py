"""The embedded development database: SecantusDB run as a child process.

SecantusDB is GPL-2.0 and a development dependency only, so it is started as its own
program (`secantusd-py`) and spoken to over the wire protocol, never imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


class EmbeddedDatabaseError(RuntimeError):
    """The embedded database could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def find_command(command: str) -> str:
    """The path of `command`, looked up on PATH and beside the running Python."""
    found = shutil.which(command) or shutil.which(command, path=str(Path(sys.executable).parent))
    if found is None:
        raise EmbeddedDatabaseError(
            f"{command!r} was not found. Install the development extra "
            "(pip install -e '.[dev]', which `make run` does) or set MONGODB_URI."
        )
    return found


class EmbeddedDatabase:
    """One SecantusDB server process on a local port.

    `data_dir=None` keeps the data in memory (tests); otherwise it survives restarts.
    """

    def __init__(
        self,
        *,
        command: str = "secantusd-py",
        data_dir: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_args: tuple[str, ...] = (),
        start_timeout: float = 30.0,
    ) -> None:
        self.command = command
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_port(host)
        self.extra_args = extra_args
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        if port_answers(self.host, self.port):
            raise EmbeddedDatabaseError(
                f"Port {self.port} on {self.host} is already in use, so the embedded database "
                "cannot start there. Stop what uses it or set SESSIONGRAPH_EMBEDDED_PORT."
            )
        storage = ":memory:"
        log_file: IO[bytes] | None = None
        log_name = "its output"
        durability: tuple[str, ...] = ()
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            storage = str(self.data_dir)
            # SecantusDB honours j:true on a transaction's commit only with this flag; without
            # it a crash can lose acknowledged appends.
            durability = ("--sync-on-commit",)
            log_path = self.data_dir.parent / "secantus.log"
            log_name = str(log_path)
            log_file = log_path.open("ab")
        args = [
            find_command(self.command),
            "--host", self.host,
            "--port", str(self.port),
            "--storage-path", storage,
            "--log-level", "WARNING",
            *durability,
            *self.extra_args,
        ]  # fmt: skip
        try:
            self.process = subprocess.Popen(
                args,
                stdout=subprocess.DEVNULL if log_file is None else log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            # The server writes to a descriptor of its own.
            if log_file is not None:
                log_file.close()
        deadline = time.monotonic() + self.start_timeout
        while not port_answers(self.host, self.port):
            if self.process.poll() is not None:
                raise EmbeddedDatabaseError(
                    f"The embedded database exited with code {self.process.returncode} "
                    f"during start-up; see {log_name}."
                )
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedDatabaseError(
                    f"The embedded database did not answer on port {self.port} within "
                    f"{self.start_timeout:g} s."
                )
            time.sleep(0.05)
        log.info("embedded database listening on %s:%s", self.host, self.port)

    async def start_async(self) -> None:
        """`start`, without blocking the event loop."""
        await asyncio.to_thread(self.start)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server gracefully, killing it if it does not stop in time."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    async def stop_async(self) -> None:
        await asyncio.to_thread(self.stop)
