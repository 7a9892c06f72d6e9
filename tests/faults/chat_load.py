"""A steady chat load that survives faults, and the ledger that proves nothing was lost.

Each :class:`Peer` is one person (a visitor or an agent) speaking protocol v1
as docs/protocol.md tells a client to: it keeps the last ``seq`` per
conversation, reconnects with backoff to the next server when its connection
drops, says ``hello`` with its cursors, and resends every message not yet
acknowledged with its original ``id``. It does not filter what it receives:
every ``message`` event it is shown is counted, so a message shown twice or
never is the server's fault.

:class:`ChatLoad` runs visitors and agents over two servers at a fixed rate
and :meth:`ChatLoad.verdict` compares what was acknowledged, stored and shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from redis.asyncio import Redis

# Timeouts
CONNECT_TIMEOUT_S = 3.0
RECV_TIMEOUT_S = 5.0
RETRY_UNACKED_S = 1.5
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 1.0


@dataclass
class Peer:
    """One visitor or agent, connected to one of ``servers`` at a time."""

    name: str
    endpoint: str  # "visitor" | "agent"
    token: str
    servers: list[str]  # ws:// bases, the first is preferred
    capacity: int = 5
    cursors: dict[str, str] = field(default_factory=dict)
    shown: Counter[tuple[str, str]] = field(default_factory=Counter)  # (conv, id) -> times
    acked: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (conv, seq)
    unacked: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> frame
    sent_at: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # own message: send -> shown
    ack_times: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    reconnects: int = 0
    connected_at: float = 0.0
    server_index: int = 0
    ws: websockets.ClientConnection | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _task: asyncio.Task[None] | None = None
    _connected: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False

    @property
    def convs(self) -> list[str]:
        return sorted(self.cursors)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"peer-{self.name}")

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)

    # ------------------------------------------------------------ sending

    async def say(self, conv: str | None, text: str) -> str:
        mid = f"{self.name}-{next(self._ids)}"
        frame: dict[str, Any] = {"v": 1, "type": "message", "id": mid, "text": text}
        if conv is not None:
            frame["conversation"] = conv
        self.unacked[mid] = frame
        self.sent_at[mid] = time.monotonic()
        await self._send(frame)
        return mid

    async def _send(self, frame: dict[str, Any]) -> None:
        ws = self.ws
        if ws is None:
            return  # resent after the next hello
        with contextlib.suppress(websockets.ConnectionClosed, OSError):
            await ws.send(json.dumps(frame))

    async def resend_unacked(self, older_than: float = 0.0) -> None:
        now = time.monotonic()
        for mid, frame in list(self.unacked.items()):
            if now - self.sent_at.get(mid, 0) >= older_than:
                self.sent_at[mid] = now
                await self._send(frame)

    # ------------------------------------------------------------ connection

    async def _run(self) -> None:
        delay = BACKOFF_FIRST_S
        while not self.stopping:
            base = self.servers[self.server_index % len(self.servers)]
            try:
                await self._session(base)
                delay = BACKOFF_FIRST_S
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                if isinstance(exc, websockets.ConnectionClosed) and exc.rcvd is not None:
                    self.closes[exc.rcvd.code] += 1
            self.ws = None
            self._connected.clear()
            if self.stopping:
                return
            self.reconnects += 1
            self.server_index += 1  # fail over to the other server
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _session(self, base: str) -> None:
        ws = await asyncio.wait_for(
            websockets.connect(
                f"{base}/ws/{self.endpoint}",
                open_timeout=CONNECT_TIMEOUT_S,
                close_timeout=1,
                max_size=None,
                ping_interval=None,
            ),
            CONNECT_TIMEOUT_S + 1,
        )
        try:
            hello: dict[str, Any] = {"v": 1, "type": "hello", "token": self.token}
            if self.cursors:
                hello["resume"] = dict(self.cursors)
            await ws.send(json.dumps(hello))
            welcome = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
            if welcome.get("type") != "welcome":
                self.errors[str(welcome.get("code") or "before welcome: " + welcome["type"])] += 1
                return
            for view in welcome["conversations"]:
                self._events(view["conversation"], view["events"])
            if self.endpoint == "agent":
                await ws.send(
                    json.dumps(
                        {"v": 1, "type": "status", "status": "online", "capacity": self.capacity}
                    )
                )
            self.ws = ws
            self.connected_at = time.monotonic()
            self._connected.set()
            await self.resend_unacked()
            async for raw in ws:
                self._on_frame(json.loads(raw))
        finally:
            self.ws = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1)
            if ws.transport is not None:
                ws.transport.abort()

    # ------------------------------------------------------------ receiving

    def _events(self, conv: str, events: list[dict[str, Any]]) -> None:
        self.cursors.setdefault(conv, "0-0")
        for event in events:
            self._event(conv, event)

    def _event(self, conv: str, event: dict[str, Any]) -> None:
        self.cursors[conv] = event["seq"]
        if event.get("type") != "message":
            return
        mid = str(event["id"])
        self.shown[(conv, mid)] += 1
        if mid in self.sent_at and self.shown[(conv, mid)] == 1:
            self.latencies.append(time.monotonic() - self.sent_at[mid])

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "ack":
            ref = str(frame["ref"])
            self.acked[ref] = (str(frame["conversation"]), str(frame["seq"]))
            self.unacked.pop(ref, None)
            self.ack_times.append(time.monotonic())
            self.cursors.setdefault(str(frame["conversation"]), "0-0")
        elif kind == "error":
            self.errors[str(frame.get("code"))] += 1
        elif kind == "assignment":
            self._events(str(frame["conversation"]), frame["events"])
        elif "seq" in frame and "conversation" in frame:
            self._event(str(frame["conversation"]), frame)

    # ------------------------------------------------------------ faults

    def drop_mid_frame(self) -> bool:
        """Write half of a frame and cut the TCP connection; True if there was one."""
        ws = self.ws
        if ws is None or ws.transport is None:
            return False
        mask = random.randbytes(4)
        header = bytes([0x81, 0x80 | 126]) + (4000).to_bytes(2, "big") + mask
        ws.transport.write(header + random.randbytes(random.randrange(0, 200)))
        ws.transport.abort()
        return True


@dataclass
class Verdict:
    acked: int
    lost: list[str]
    duplicated: list[str]
    stored_twice: list[str]
    unacked: int
    errors: Counter[str]
    closes: Counter[int]
    reconnects: int
    latencies: list[float]

    def summary(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        return (
            f"acked={self.acked} lost={len(self.lost)} duplicated={len(self.duplicated)} "
            f"stored_twice={len(self.stored_twice)} unacked={self.unacked} "
            f"reconnects={self.reconnects} errors={dict(self.errors)} closes={dict(self.closes)} "
            f"p50={lat[len(lat) // 2] * 1000:.0f}ms max={lat[-1] * 1000:.0f}ms"
        )


class ChatLoad:
    """Visitors and agents over two servers, talking at a steady rate."""

    def __init__(
        self,
        redis_url: str,
        servers: list[Any],  # objects with .base and .ws
        *,
        conversations: int = 20,
        agents: int = 4,
        visitor_rate: float = 2.0,
        agent_rate: float = 1.0,
        password: str = "",
    ) -> None:
        self.redis_url = redis_url
        self.servers = servers
        self.n_convs = conversations
        self.n_agents = agents
        self.visitor_rate = visitor_rate
        self.agent_rate = agent_rate
        self.password = password
        self.visitors: list[Peer] = []
        self.agents: list[Peer] = []
        self._talkers: list[asyncio.Task[None]] = []
        self.talking = False

    @property
    def peers(self) -> list[Peer]:
        return self.agents + self.visitors

    def _order(self, i: int) -> list[str]:
        bases = [s.ws for s in self.servers]
        return bases[i % len(bases) :] + bases[: i % len(bases)]

    async def start(self) -> None:
        """Connect everyone and open every conversation; returns when all are assigned."""
        from tests.server.support import make_account

        base = self.servers[0].base
        per_agent = -(-self.n_convs // self.n_agents)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for i in range(self.n_agents):
                await make_account(self.redis_url, f"agent{i}", languages=["en"])
                r = await http.post(
                    "/api/login", json={"username": f"agent{i}", "password": self.password}
                )
                r.raise_for_status()
                peer = Peer(f"agent{i}", "agent", r.json()["token"], self._order(i), per_agent + 1)
                self.agents.append(peer)
            for i in range(self.n_convs):
                r = await http.post("/api/visitors", json={"site": "acme", "lang": "en"})
                r.raise_for_status()
                self.visitors.append(Peer(f"v{i}", "visitor", r.json()["token"], self._order(i)))
        for peer in self.agents:
            peer.start()
        await asyncio.gather(*(p.wait_connected() for p in self.agents))
        for peer in self.visitors:
            peer.start()
        await asyncio.gather(*(p.wait_connected() for p in self.visitors))
        for peer in self.visitors:
            await peer.say(None, "hello")
        await self.until(
            lambda: (
                sum(len(a.convs) for a in self.agents) >= self.n_convs
                and all(v.convs for v in self.visitors)
            ),
            15,
            "every conversation assigned",
        )

    async def until(self, cond: Any, timeout: float, what: str) -> float:
        """Wait for ``cond()``; returns the seconds it took."""
        t0 = time.monotonic()
        while not cond():
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"not within {timeout}s: {what}; {self.verdict_now()}")
            await asyncio.sleep(0.05)
        return time.monotonic() - t0

    def talk(self) -> None:
        self.talking = True
        for peer in self.visitors:
            self._talkers.append(asyncio.create_task(self._talk(peer, self.visitor_rate)))
        for peer in self.agents:
            self._talkers.append(asyncio.create_task(self._talk(peer, self.agent_rate)))

    async def _talk(self, peer: Peer, rate: float) -> None:
        await asyncio.sleep(random.random() / rate)
        n = 0
        next_at = time.monotonic()
        while self.talking:
            convs = peer.convs
            if convs:
                conv = convs[n % len(convs)] if peer.endpoint == "agent" else None
                await peer.say(conv, f"{peer.name} says {n}")
                n += 1
            await peer.resend_unacked(older_than=RETRY_UNACKED_S)
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def quiesce(self, timeout: float = 20.0) -> None:
        """Stop talking, get every message acknowledged, let deliveries arrive."""
        self.talking = False
        for task in self._talkers:
            task.cancel()
        await asyncio.gather(*self._talkers, return_exceptions=True)
        self._talkers = []
        t0 = time.monotonic()
        while any(p.unacked for p in self.peers):
            if time.monotonic() - t0 > timeout:
                break
            for peer in self.peers:
                await peer.resend_unacked(older_than=RETRY_UNACKED_S)
            await asyncio.sleep(0.2)

        def delivered() -> bool:
            return all(self._shown_to(conv, mid) >= 2 for conv, mid in self._all_acked())

        with contextlib.suppress(AssertionError):
            await self.until(delivered, 10, "every acknowledged message shown to both sides")
        await asyncio.sleep(0.5)

    def _all_acked(self) -> set[tuple[str, str]]:
        return {(conv, mid) for p in self.peers for mid, (conv, _) in p.acked.items()}

    def _shown_to(self, conv: str, mid: str) -> int:
        return sum(1 for p in self.peers if p.shown.get((conv, mid)))

    def verdict_now(self) -> str:
        return " ".join(f"{p.name}:unacked={len(p.unacked)}" for p in self.peers if p.unacked)

    async def verdict(self) -> Verdict:
        """Every acknowledged message: stored once, shown once to its visitor and its agent."""
        owner: dict[str, str] = {}  # conv -> visitor name
        for v in self.visitors:
            for conv in v.convs:
                owner[conv] = v.name
        lost, duplicated = [], []
        for conv, mid in sorted(self._all_acked()):
            audience = [p for p in self.visitors if p.name == owner.get(conv)]
            audience += [a for a in self.agents if conv in a.cursors]
            for peer in audience:
                times = peer.shown.get((conv, mid), 0)
                if times == 0:
                    seq = next(p.acked[mid][1] for p in self.peers if mid in p.acked)
                    lost.append(
                        f"{mid} not shown to {peer.name} (seq {seq}, {peer.name} is at "
                        f"{peer.cursors.get(conv)})"
                    )
                elif times > 1:
                    duplicated.append(f"{mid} shown {times}x to {peer.name}")
            if not any(a for a in self.agents if conv in a.cursors):
                lost.append(f"{conv} has no agent")
        for peer in self.peers:
            for (_conv, mid), times in peer.shown.items():
                if times > 1 and f"{mid} shown {times}x to {peer.name}" not in duplicated:
                    duplicated.append(f"{mid} shown {times}x to {peer.name}")
        stored_twice = await self._stored_twice({c for c, _ in self._all_acked()})
        all_lat = [x for p in self.peers for x in p.latencies]
        errors: Counter[str] = Counter()
        closes: Counter[int] = Counter()
        for p in self.peers:
            errors.update(p.errors)
            closes.update(p.closes)
        return Verdict(
            acked=len(self._all_acked()),
            lost=lost,
            duplicated=duplicated,
            stored_twice=stored_twice,
            unacked=sum(len(p.unacked) for p in self.peers),
            errors=errors,
            closes=closes,
            reconnects=sum(p.reconnects for p in self.peers),
            latencies=all_lat,
        )

    async def _stored_twice(self, convs: set[str]) -> list[str]:
        r = Redis.from_url(self.redis_url, decode_responses=True)
        out = []
        try:
            for conv in convs:
                ids: Counter[str] = Counter()
                for _, fields in await r.xrange(f"{{conv:{conv}}}:events"):
                    event = json.loads(fields["e"])
                    if event.get("type") == "message":
                        ids[event["id"]] += 1
                out += [f"{conv}/{mid} x{n}" for mid, n in ids.items() if n > 1]
        finally:
            await r.aclose()
        return out

    async def stop(self) -> None:
        self.talking = False
        for task in self._talkers:
            task.cancel()
        await asyncio.gather(*(p.stop() for p in self.peers), return_exceptions=True)

    def first_ack_after(self, t: float) -> dict[str, float]:
        """Per peer: seconds from ``t`` to its first acknowledgement after ``t``."""
        out = {}
        for p in self.peers:
            later = [x for x in p.ack_times if x > t]
            out[p.name] = (min(later) - t) if later else float("inf")
        return out


def latency_by_phase(peers: list[Peer]) -> dict[str, Any]:
    by: dict[str, list[float]] = defaultdict(list)
    for p in peers:
        by[p.endpoint] += p.latencies
    return {k: sorted(v)[len(v) // 2] if v else None for k, v in by.items()}
