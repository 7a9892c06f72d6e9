"""Browser tests: a real ``tactline serve`` (demo on) on a loopback port, a real Redis,
and Debian's Chromium driven by Playwright.

- ``site``: one server for the session, with the demo accounts it printed.
- ``browser``: Chromium, shared; ``new_page`` gives each test fresh contexts (their own
  localStorage) that record dialogs and page errors.
- ``agent_name``: a fresh agent account per call, so tests do not share routing state;
  after each test every open conversation is closed and the test's agents go offline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from tests.conftest import ROOT, TEST_SECRET, free_port
from tests.server.support import PASSWORD, Client, connect, make_account, session_token

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
OUT_DIR = ROOT / "var" / "test-output" / "widget"  # var/ is not tracked

# Timeouts
SERVER_READY_TIMEOUT_S = 60.0
BROWSER_LAUNCH_TIMEOUT_MS = 30_000
PAGE_TIMEOUT_MS = 10_000
STOP_TIMEOUT_S = 15.0

DEMO_LINE = re.compile(r"^\s+(\S+)\s+(agent|supervisor)\s+(\S+)\s*$", re.M)
TRAIL_LINES = 150  # per page, printed when a browser test fails
TRAIL_CHARS = 400
CALL_FAILED = pytest.StashKey[bool]()
WIDGET_DB = 200  # a Redis database of its own on the shared test Redis
SHOP_SECRET = "shop-site-secret"  # identity verification on the "shop" site


def require_chromium() -> None:
    if os.access(CHROMIUM, os.X_OK):
        return
    message = (f"!!! {CHROMIUM} IS MISSING: the browser tests did not run. "
               "Install Debian's chromium (apt-get install chromium). !!!")
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Site:
    """A ``tactline serve`` process with the demo on, restartable on the same port."""

    redis_url: str
    port: int = field(default_factory=free_port)
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tactline-web-")))
    extra_env: dict[str, str] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)  # name -> password
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TACTLINE_")}
        env.update({
            "PYTHONPATH": str(ROOT),
            "TACTLINE_SECRET": TEST_SECRET,
            "TACTLINE_DATA_DIR": str(self.data_dir),
            "TACTLINE_REDIS_URL": self.redis_url,
            "TACTLINE_LOG_LEVEL": "warning",
            "TACTLINE_LOGIN_ATTEMPTS_PER_MIN": "1000",
            "TACTLINE_GRACE_PERIOD_S": "2",
            "TACTLINE_SWEEP_INTERVAL_S": "0.2",
            "TACTLINE_SITES": json.dumps({"shop": {
                "origins": ["self", "http://127.0.0.1:*"], "secret": SHOP_SECRET,
                "name": "Verified shop"}}),
        })
        env.update(self.extra_env)
        return env

    def start(self) -> Site:
        self.log_path = self.data_dir / f"serve-{time.monotonic_ns()}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tactline serve exited:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    for name, _role, password in DEMO_LINE.findall(self.output()):
                        self.accounts[name] = password
                    return self
            time.sleep(0.2)
        raise RuntimeError(
            f"tactline serve not ready in {SERVER_READY_TIMEOUT_S}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    async def login(self, name: str, password: str | None = None) -> str:
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.post(self.base + "/api/login", json={
                "username": name, "password": password or self.accounts.get(name, PASSWORD)})
            r.raise_for_status()
            return str(r.json()["token"])

    async def agent_client(self, name: str, online: bool = True) -> Client:
        """A protocol client for an agent (``websockets``), online unless told otherwise."""
        client = await connect(self.ws, "/ws/agent", await session_token(self.base, name))
        assert client.welcome["type"] == "welcome", client.welcome
        if online:
            await client.send(type="status", status="online", capacity=5)
            await client.expect("queue_snapshot")
        return client

    async def close_everything(self, agents: list[str]) -> None:
        """Close every open conversation (as the demo supervisor), then take agents offline."""
        token = await self.login("supervisor")
        async with httpx.AsyncClient(timeout=5) as http:
            convs: list[str] = []
            for status in ("queued", "assigned"):
                r = await http.get(self.base + "/api/conversations",
                                   params={"status": status, "limit": 100},
                                   headers={"Authorization": f"Bearer {token}"})
                if r.status_code == 200:
                    convs += [c["conversation"] for c in r.json()["items"]]
        if convs:
            sup = await connect(self.ws, "/ws/agent", token)
            for conv in convs:
                await sup.send(type="close", conversation=conv, id=f"cleanup-{conv}"[:64])
            with contextlib.suppress(TimeoutError):
                await sup.quiet("closed", within=0.5)
            await sup.close()
        for name in agents:
            with contextlib.suppress(Exception):
                client = await connect(self.ws, "/ws/agent", await session_token(self.base, name))
                await client.send(type="status", status="offline")
                with contextlib.suppress(TimeoutError):
                    await client.expect("queue_snapshot", timeout=2)
                await client.close()


def empty_db(redis_url: str, db: int) -> str:
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    url = f"{base}/{db}"
    client = redis_sync.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


def start_site(redis_url: str, db: int, **env: str) -> Site:
    server = Site(empty_db(redis_url, db), extra_env=env).start()
    assert {"agent1", "agent2", "supervisor"} <= set(server.accounts), server.output()
    return server


@pytest.fixture(scope="session")
def site(redis_url: str) -> Iterator[Site]:
    require_chromium()
    server = start_site(redis_url, WIDGET_DB)
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    require_chromium()
    from playwright.async_api import async_playwright

    pw = await async_playwright().start()
    chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                        timeout=BROWSER_LAUNCH_TIMEOUT_MS)
    yield chromium
    await chromium.close()
    await pw.stop()


@dataclass
class Watched:
    """What a page did that a test may want to assert on."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: The page's console and WebSocket frames, printed when its test fails.
    trail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=TRAIL_LINES))

    def note(self, kind: str, text: str) -> None:
        self.trail.append(f"{time.strftime('%H:%M:%S')} {kind} {text[:TRAIL_CHARS]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed


def failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test that ``request`` serves failed (known in its fixtures' teardown)."""
    return request.node.stash.get(CALL_FAILED, False)


@pytest.fixture
async def new_page(
    browser: Any, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await new_page(width=1280, height=800, locale="en-US")``: a page in a fresh context;
    ``page.watched`` holds its dialogs and uncaught errors, and what the page logged and
    sent and received on its sockets is printed if the test fails."""
    contexts: list[Any] = []
    pages: list[Any] = []

    async def make(width: int = 1280, height: int = 800, locale: str = "en-US") -> Any:
        context = await browser.new_context(viewport={"width": width, "height": height},
                                            locale=locale)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        context.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
        contexts.append(context)
        page = await context.new_page()
        watched = Watched()

        def on_dialog(dialog: Any) -> None:
            watched.dialogs.append(dialog.message)
            asyncio.ensure_future(dialog.dismiss())

        page.on("dialog", on_dialog)
        def on_socket(ws: Any) -> None:
            watched.note("ws-open", ws.url)
            ws.on("framesent", lambda payload: watched.note(">>", str(payload)))
            ws.on("framereceived", lambda payload: watched.note("<<", str(payload)))
            ws.on("close", lambda _: watched.note("ws-close", ws.url))

        page.on("pageerror", lambda exc: watched.errors.append(str(exc)))
        page.on("pageerror", lambda exc: watched.note("error", str(exc)))
        page.on("console", lambda msg: watched.note("console", f"{msg.type}: {msg.text}"))
        page.on("websocket", on_socket)
        page.watched = watched
        pages.append(page)
        return page

    yield make
    if failed(request):
        for n, page in enumerate(pages):
            print(f"--- page {n + 1} ({page.url}): last {TRAIL_LINES} notes")
            print("\n".join(page.watched.trail))
    for context in contexts:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(context.close(), 10)


_agent_numbers = iter(range(1, 100_000))


@pytest.fixture
async def agent_name(site: Site) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``await agent_name()``: a new agent account (password ``PASSWORD``) for this test."""
    made: list[str] = []

    async def make(languages: list[str] | None = None, teams: list[str] | None = None) -> str:
        name = f"w{os.getpid() % 1000}a{next(_agent_numbers)}"
        await make_account(
            site.redis_url, name, languages=languages or ["en", "sr", "hr", "sl"], teams=teams
        )
        site.accounts[name] = PASSWORD
        made.append(name)
        return name

    yield make
    await site.close_everything(made)


@pytest.fixture(scope="session")
def out_dir() -> Path:
    """Screenshots and other artefacts of the browser tests."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUT_DIR


class ThirdPartySite:
    """Another origin on loopback that embeds the widget: ``put(path, html)`` then visit ``url``."""

    def __init__(self) -> None:
        pages: dict[str, bytes] = {}
        self.pages = pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = pages.get(self.path.split("?")[0])
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body or b"not found")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def put(self, path: str, html: str) -> str:
        self.pages[path] = html.encode()
        return self.base + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def third_party() -> Iterator[ThirdPartySite]:
    server = ThirdPartySite()
    yield server
    server.close()
