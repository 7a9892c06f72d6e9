"""Test helpers: an in-process server on a loopback port and protocol clients.

Every receive has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
import websockets

from server import redisconn
from server.accounts import add_account
from server.app import create_app
from server.config import Settings, Site
from tests.conftest import TEST_SECRET

# Timeouts
RECV_TIMEOUT_S = 5.0
QUIET_S = 0.3
READY_TIMEOUT_S = 60.0

SITE_SECRET = "acme-site-secret"
PASSWORD = "correct horse battery"

_ids = itertools.count(1)


def settings_for(redis_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "redis_url": redis_url,
        "secret": TEST_SECRET,
        "demo": False,
        "sites": {"acme": Site(origins=["https://acme.example"], secret=SITE_SECRET)},
        "log_level": "warning",
        "sweep_interval_s": 0.2,
        "presence_ttl_s": 3.0,
    }
    base.update(overrides)
    return Settings(**base)


class InProcessServer:
    """The real app on uvicorn, in the test's event loop, on 127.0.0.1 port 0."""

    def __init__(self, settings: Settings, *, coach: bool = False) -> None:
        self.settings = settings
        self.app = create_app(settings, load_coach=coach)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="on",
            ws_max_size=settings.max_frame_bytes,
            ws_ping_interval=settings.ping_interval_s,
            ws_ping_timeout=settings.ping_timeout_s,
            ws_per_message_deflate=settings.ws_compression,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.task: asyncio.Task[None] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> InProcessServer:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        for _ in range(200):
            if self.server.started:
                return self
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        raise RuntimeError("server did not start")

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 10)
        self.sock.close()


@contextlib.asynccontextmanager
async def running(
    redis_url: str, *, coach: bool = False, **overrides: Any
) -> AsyncIterator[InProcessServer]:
    server = await InProcessServer(settings_for(redis_url, **overrides), coach=coach).start()
    try:
        yield server
    finally:
        await server.stop()


async def wait_ready(base: str) -> str:
    """Wait until ``/readyz`` answers 200 (the coach has loaded its rules); its text."""
    async with httpx.AsyncClient(timeout=5) as http:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        while loop.time() < deadline:
            r = await http.get(base + "/readyz")
            if r.status_code == 200:
                return r.text
            await asyncio.sleep(0.1)
    raise TimeoutError("server never became ready")


@contextlib.asynccontextmanager
async def running_with_coach(redis_url: str, **overrides: Any) -> AsyncIterator[InProcessServer]:
    """An in-process server with the real coach, once it is ready."""
    async with running(redis_url, coach=True, **overrides) as server:
        await wait_ready(server.base)
        yield server


@contextlib.asynccontextmanager
async def redis_pipeline(redis_url: str) -> AsyncIterator[Any]:
    """A pipeline of commands to Redis, sent at the end of the block."""
    conns = await redisconn.connect(redis_url)
    try:
        pipe = conns.commands.pipeline(transaction=False)
        yield pipe
        await pipe.execute()
    finally:
        await conns.aclose()


class Client:
    """A protocol v1 client on a websockets connection."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.skipped: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}
        self.token = ""  # the one it said hello with

    async def send(self, **frame: Any) -> None:
        frame.setdefault("v", 1)
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def recv(self, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        data: dict[str, Any] = json.loads(raw)
        return data

    async def expect(
        self, *types: str, timeout: float = RECV_TIMEOUT_S, **fields: Any
    ) -> dict[str, Any]:
        """The first frame of one of ``types`` matching ``fields``, from those kept aside
        earlier or arriving next; frames that do not match are kept aside."""

        def matches(frame: dict[str, Any]) -> bool:
            return frame.get("type") in types and all(frame.get(k) == v for k, v in fields.items())

        for i, frame in enumerate(self.skipped):
            if matches(frame):
                return self.skipped.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(
                    f"no {types} {fields} within {timeout}s; saw {self.skipped[-5:]}"
                )
            frame = await self.recv(left)
            if matches(frame):
                return frame
            self.skipped.append(frame)

    async def quiet(self, *types: str, within: float = QUIET_S) -> list[dict[str, Any]]:
        """Frames of ``types`` that arrive within ``within`` seconds (expected: none)."""
        seen = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (left := deadline - loop.time()) > 0:
            try:
                frame = await self.recv(left)
            except TimeoutError:
                break
            if frame.get("type") in types:
                seen.append(frame)
        return seen

    async def say(
        self, text: str, conversation: str | None = None, msg_id: str | None = None
    ) -> dict[str, Any]:
        """Send a message and return its ack."""
        mid = msg_id or f"m{next(_ids)}"
        frame: dict[str, Any] = {"type": "message", "id": mid, "text": text}
        if conversation:
            frame["conversation"] = conversation
        await self.send(**frame)
        return await self.expect("ack", ref=mid)

    async def close(self) -> None:
        await self.ws.close()


async def connect(
    ws_base: str,
    path: str,
    token: str,
    resume: dict[str, str] | None = None,
    origin: str | None = None,
    **kw: Any,
) -> Client:
    headers = {"Origin": origin} if origin else None
    ws = await asyncio.wait_for(
        websockets.connect(
            ws_base + path, additional_headers=headers, open_timeout=5, close_timeout=2, **kw
        ),
        RECV_TIMEOUT_S,
    )
    client = Client(ws)
    client.token = token
    hello: dict[str, Any] = {"type": "hello", "token": token}
    if resume:
        hello["resume"] = resume
    await client.send(**hello)
    client.welcome = await client.expect("welcome", "error")
    return client


async def visitor_token(base: str, site: str = "acme", lang: str = "en", **extra: Any) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.post(base + "/api/visitors", json={"site": site, "lang": lang, **extra})
        r.raise_for_status()
        return str(r.json()["token"])


async def visitor(srv: Any, lang: str = "en", **extra: Any) -> Client:
    return await connect(srv.ws, "/ws/visitor", await visitor_token(srv.base, lang=lang, **extra))


async def make_account(
    redis_url: str,
    name: str,
    role: str = "agent",
    languages: list[str] | None = None,
    teams: list[str] | None = None,
) -> None:
    conns = await redisconn.connect(redis_url)
    try:
        await add_account(
            conns.commands,
            name,
            role,
            PASSWORD,
            display_name=name.capitalize(),
            languages=languages or ["en", "sr"],
            teams=teams,
        )
    finally:
        await conns.aclose()


async def session_token(base: str, name: str) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.post(base + "/api/login", json={"username": name, "password": PASSWORD})
        r.raise_for_status()
        return str(r.json()["token"])


async def agent(
    srv: Any,
    redis_url: str,
    name: str,
    *,
    online: bool = True,
    capacity: int = 3,
    languages: list[str] | None = None,
    teams: list[str] | None = None,
    create: bool = True,
    resume: dict[str, str] | None = None,
) -> Client:
    if create:
        await make_account(redis_url, name, languages=languages, teams=teams)
    client = await connect(srv.ws, "/ws/agent", await session_token(srv.base, name), resume=resume)
    assert client.welcome["type"] == "welcome", client.welcome
    if online:
        await client.send(
            type="status",
            status="online",
            capacity=capacity,
            **({"languages": languages} if languages else {}),
        )
        await client.expect("queue_snapshot")
    return client


async def open_chat(srv: Any, ag: Client, text: str, **visitor_kw: Any) -> tuple[Client, str]:
    """A new visitor says ``text``; them and the conversation, once ``ag`` is assigned it."""
    vi = await visitor(srv, **visitor_kw)
    conv = str((await vi.say(text))["conversation"])
    await ag.expect("assignment", conversation=conv)
    return vi, conv


async def start_chat(
    srv: Any, redis_url: str, name: str = "ana", lang: str = "en"
) -> tuple[Client, Client, str]:
    """Agent ``name`` goes online and gets visitor Marko's chat: agent, visitor, conversation."""
    ag = await agent(srv, redis_url, name)
    vi, conv = await open_chat(srv, ag, "Hello, my parcel is late.", lang=lang, name="Marko")
    return ag, vi, conv


async def apply_a_suggestion(ag: Client, conv: str) -> dict[str, Any]:
    """The agent sends the coach's first suggestion for "I don't know."; its ``coach_checked``."""
    await ag.send(type="draft", conversation=conv, draft_id=1, text="I don't know.")
    shown = await ag.expect("coach", conversation=conv)
    suggestion = shown["flags"][0]["suggestions"][0]
    ack = await ag.say(f"Hi, I'm Ana. {suggestion}.", conversation=conv)
    return await ag.expect("coach_checked", ref=ack["ref"])


async def ignore_a_suggestion(ag: Client, conv: str) -> dict[str, Any]:
    """The agent sends "Calm down." as drafted, despite the coach; its ``coach_checked``."""
    await ag.send(type="draft", conversation=conv, draft_id=2, text="Calm down.")
    await ag.expect("coach", conversation=conv, draft_id=2)
    ack = await ag.say("Calm down.", conversation=conv)
    return await ag.expect("coach_checked", ref=ack["ref"])


async def console(srv: Any, name: str) -> Client:
    """Log ``name`` in and open their console, without going online."""
    return await connect(srv.ws, "/ws/agent", await session_token(srv.base, name))


async def http_as(srv: Any, name: str) -> httpx.AsyncClient:
    """Log ``name`` in: an HTTP client that sends their session token."""
    token = await session_token(srv.base, name)
    return httpx.AsyncClient(
        base_url=srv.base, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


async def supervisor_http(srv: Any, redis_url: str, name: str = "sanja") -> httpx.AsyncClient:
    """Add supervisor ``name`` and log them in over HTTP."""
    await make_account(redis_url, name, role="supervisor")
    return await http_as(srv, name)


async def close_all(*clients: Client) -> None:
    """Close every client's connection."""
    for client in clients:
        await client.close()


async def burst_of_drafts(ag: Client, conv: str, typed: str, count: int = 40) -> None:
    """``count`` drafts of ``typed``, longer and longer, in one TCP write, as from a fast
    typist on a slow link."""
    protocol = ag.ws.protocol
    for n in range(1, count + 1):
        frame = {"v": 1, "type": "draft", "conversation": conv, "draft_id": n}
        frame["text"] = typed[: len(typed) * n // count]
        protocol.send_text(json.dumps(frame).encode())
    ag.ws.transport.write(b"".join(protocol.data_to_send()))
