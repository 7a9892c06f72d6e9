"""Load and soak: many WebSocket connections on two server processes and one Redis.

    .venv/bin/python bench/load.py [--connections 5000] [--conversations 2500] [--stage-s 20]
    .venv/bin/python bench/load.py --soak-minutes 10 --conversations 500 --connections 1000

Loopback only, bounded in count and time. Starts a private redis-server and
two ``tactline serve`` processes with the coach loaded; this process is the
load generator. Connections are chatting visitors, their agents (one per 20
conversations) and idle visitors (a page with the widget open, no chat), up
to ``--connections``. Each conversation carries 1 message/s: the visitor and
the agent take turns, and every agent message follows a coached ``draft``.

The ramp adds conversations in stages and holds each for ``--stage-s``; it
stops early when a stage cannot connect its clients or delivery collapses.
Per stage it prints connections held, delivered messages/s, delivery latency
(sender's send to the other side's screen) p50/p99/p999, errors and closes by
code, and the RSS of each process; at the end every acknowledged message is
checked for loss and duplication. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.relay import free_port, start_redis, wait_http  # noqa: E402
from server.tokens import sign  # noqa: E402
from tests.faults.chat_load import ChatLoad, Peer  # noqa: E402

SECRET = "load-secret-" + "l" * 40
PER_AGENT = 10  # an agent with 10 chats at 1 msg/s stays under 20 frames/s
DRAFT = "I don't know, that's not my job, but let me check"
REPLY = "Thank you for waiting, I have checked your order"

# Limits
CONNECT_BATCH = 100
CONNECT_TIMEOUT_S = 60.0
COLLAPSE_P99_S = 5.0


class TimedPeer(Peer):
    """A peer that records, for messages from the other side, send-to-shown latency."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.delivery: list[float] = []

    def _event(self, conv: str, event: dict[str, Any]) -> None:
        super()._event(conv, event)
        text = str(event.get("text", ""))
        if event.get("type") == "message" and text.startswith("t=") and self.name not in text:
            with contextlib.suppress(ValueError):
                self.delivery.append(time.time() - float(text[2 : text.index(" ")]))


def server_env(redis_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TACTLINE_")}
    env.update(
        {
            "TACTLINE_REDIS_URL": redis_url,
            "TACTLINE_SECRET": SECRET,
            "TACTLINE_DATA_DIR": str(data_dir),
            "TACTLINE_LOG_LEVEL": "warning",
            "TACTLINE_SITES": '{"load": {"origins": ["*"]}}',
            # One load generator on 127.0.0.1 stands for thousands of clients.
            "TACTLINE_RATE_IP_PER_S": "1000000",
            "TACTLINE_RATE_IP_BURST": "1000000",
            "TACTLINE_MAX_CONNECTIONS_PER_IP": "1000000",
            "TACTLINE_IDLE_TIMEOUT_S": "3600",
            "TACTLINE_HELLO_TIMEOUT_S": "60",
            "TACTLINE_GRACE_PERIOD_S": "600",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port), "--no-demo"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120) -> None:
        wait_http(self.base + "/healthz", timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError("server not ready (coach not loaded?)")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)


def rss_mb(pid: int) -> float:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).memory_info().rss / 2**20
    return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


class Load:
    def __init__(self, args: argparse.Namespace, redis_url: str, servers: list[Server]) -> None:
        self.args = args
        self.redis_url = redis_url
        self.servers = servers
        self.ledger = ChatLoad(redis_url, servers)
        self.idle: list[websockets.ClientConnection] = []
        self.pairs: list[tuple[TimedPeer, TimedPeer | None]] = []  # (visitor, agent)
        self.agents: list[TimedPeer] = []
        self.drivers: list[asyncio.Task[None]] = []
        self.rss: list[tuple[float, list[float]]] = []
        self.t0 = time.monotonic()
        self.connect_failures = 0
        self.redis_pid = 0

    def order(self, i: int) -> list[str]:
        bases = [s.ws for s in self.servers]
        return bases[i % 2 :] + bases[: i % 2]

    async def add_agents(self, n: int) -> None:
        from redis.asyncio import Redis

        from server.accounts import add_account

        r = Redis.from_url(self.redis_url, decode_responses=True)
        try:
            for i in range(len(self.agents), n):
                name = f"agent{i}"
                await add_account(r, name, "agent", "load-password", languages=["en"])
                token = sign(SECRET, {"k": "session", "sub": name, "role": "agent", "exp": 2**40})
                peer = TimedPeer(name, "agent", token, self.order(i), PER_AGENT)
                self.agents.append(peer)
                self.ledger.agents.append(peer)
                peer.start()
        finally:
            await r.aclose()
        await asyncio.wait_for(
            asyncio.gather(*(a.wait_connected() for a in self.agents)), CONNECT_TIMEOUT_S
        )

    def visitor_token(self, name: str) -> str:
        claims = {"k": "visitor", "sub": name, "site": "load", "lang": "en", "exp": 2**40}
        return sign(SECRET, claims | {"name": "Visitor", "verified": False})

    async def add_conversations(self, n: int) -> None:
        await self.add_agents(-(-n // PER_AGENT))
        start = len(self.pairs)
        for lo in range(start, n, CONNECT_BATCH):
            batch = []
            for i in range(lo, min(lo + CONNECT_BATCH, n)):
                peer = TimedPeer(f"v{i}", "visitor", self.visitor_token(f"v_{i}"), self.order(i))
                self.ledger.visitors.append(peer)
                peer.start()
                batch.append(peer)
            await asyncio.wait_for(
                asyncio.gather(*(p.wait_connected() for p in batch)), CONNECT_TIMEOUT_S
            )
            for peer in batch:
                await peer.say(None, f"t={time.time():.6f} {peer.name} hello")
                self.pairs.append((peer, None))
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while time.monotonic() < deadline:
            owners = {c: a for a in self.agents for c in a.convs}
            missing = 0
            for k, (v, a) in enumerate(self.pairs):
                if a is None:
                    agent = owners.get(v.convs[0]) if v.convs else None
                    self.pairs[k] = (v, agent)
                    missing += agent is None
            if not missing:
                break
            await asyncio.sleep(0.2)
        for k in range(start, len(self.pairs)):
            self.drivers.append(asyncio.create_task(self.drive(k)))

    async def add_idle(self, n: int) -> None:
        while len(self.idle) < n:
            batch = min(CONNECT_BATCH, n - len(self.idle))

            async def one(i: int) -> websockets.ClientConnection | None:
                try:
                    ws = await websockets.connect(
                        self.order(i)[0] + "/ws/visitor", open_timeout=30, ping_interval=None
                    )
                    await ws.send(
                        f'{{"v":1,"type":"hello","token":"{self.visitor_token(f"idle_{i}")}"}}'
                    )
                    await asyncio.wait_for(ws.recv(), 30)
                    return ws
                except (OSError, TimeoutError, websockets.WebSocketException):
                    self.connect_failures += 1
                    return None

            got = await asyncio.gather(*(one(len(self.idle) + j) for j in range(batch)))
            self.idle += [ws for ws in got if ws is not None]
            if None in got:
                break

    async def drive(self, k: int) -> None:
        """1 message/s in conversation k: the visitor and the agent take turns."""
        visitor, agent = self.pairs[k]
        await asyncio.sleep(random.random())
        n = 0
        next_at = time.monotonic()
        while True:
            conv = visitor.convs[0] if visitor.convs else None
            if n % 2 == 0 or agent is None or conv is None:
                await visitor.say(None, f"t={time.time():.6f} {visitor.name} {n}")
            else:
                if agent.ws is not None:
                    with contextlib.suppress(websockets.ConnectionClosed):
                        draft = {"conversation": conv, "draft_id": n, "text": DRAFT}
                        await agent.ws.send(json.dumps({"v": 1, "type": "draft", **draft}))
                await asyncio.sleep(0.2)
                await agent.say(conv, f"t={time.time():.6f} {agent.name} {REPLY} {n}")
            n += 1
            for peer in (visitor, agent):
                if peer is not None:
                    await peer.resend_unacked(older_than=2.0)
            next_at += 1.0
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def held(self) -> int:
        peers = [p for p in self.ledger.peers if p.ws is not None]
        return len(peers) + sum(1 for ws in self.idle if ws.close_code is None)

    def sample_rss(self) -> list[float]:
        row = [rss_mb(s.proc.pid) for s in self.servers]
        self.rss.append((time.monotonic() - self.t0, row))
        return row

    async def hold(self, seconds: float, label: str) -> dict[str, Any]:
        peers = self.ledger.peers
        marks = {p.name: (len(p.delivery), sum(p.errors.values())) for p in peers}  # type: ignore[attr-defined]
        errors0 = Counter[str]()
        closes0 = Counter[int]()
        for p in peers:
            errors0.update(p.errors)
            closes0.update(p.closes)
        procs = [psutil.Process(s.proc.pid) for s in self.servers] + [psutil.Process()]
        if self.redis_pid:
            procs.append(psutil.Process(self.redis_pid))
        cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(min(5.0, seconds))
            self.sample_rss()
        took = time.monotonic() - t0
        cpu = [
            round(100 * (sum(p.cpu_times()[:2]) - c) / took)
            for p, c in zip(procs, cpu0, strict=True)
        ]
        lat = [x for p in peers for x in p.delivery[marks[p.name][0] :]]  # type: ignore[attr-defined]
        errors = Counter[str]()
        closes = Counter[int]()
        for p in peers:
            errors.update(p.errors)
            closes.update(p.closes)
        row = {
            "stage": label,
            "conversations": len(self.pairs),
            "held": self.held(),
            "delivered_per_s": len(lat) / took,
            "p50_ms": pct(lat, 0.5) * 1000,
            "p99_ms": pct(lat, 0.99) * 1000,
            "p999_ms": pct(lat, 0.999) * 1000,
            "errors": dict(errors - errors0),
            "closes": dict(closes - closes0),
            "rss_mb": self.sample_rss(),
            "cpu": cpu,
        }
        print(
            f"{label:>14} conv={row['conversations']:>5} held={row['held']:>5} "
            f"delivered/s={row['delivered_per_s']:>7.0f} p50={row['p50_ms']:>7.1f}ms "
            f"p99={row['p99_ms']:>8.1f}ms p999={row['p999_ms']:>8.1f}ms "
            f"rss={'/'.join(f'{x:.0f}' for x in row['rss_mb'])}MB "
            f"cpu% servers/generator/redis={'/'.join(map(str, cpu))} "
            f"errors={row['errors']} closes={row['closes']}",
            flush=True,
        )
        return row

    async def stop(self) -> None:
        for task in self.drivers:
            task.cancel()
        await asyncio.gather(*self.drivers, return_exceptions=True)
        self.drivers = []


async def run(args: argparse.Namespace, redis_url: str, servers: list[Server]) -> int:
    load = Load(args, redis_url, servers)
    load.redis_pid = args.redis_pid
    convs = args.conversations
    stages = [1.0] if args.soak_minutes else [0.1, 0.25, 0.5, 0.75, 1.0]
    rows = []
    try:
        for share in stages:
            n = max(1, int(convs * share))
            idle = max(0, int(args.connections * share) - n - -(-n // PER_AGENT))
            try:
                await load.add_conversations(n)
                await load.add_idle(idle)
            except TimeoutError:
                print(f"stage {share:.0%}: clients could not connect within {CONNECT_TIMEOUT_S}s")
                break
            if args.soak_minutes:
                for minute in range(int(args.soak_minutes)):
                    rows.append(await load.hold(60, f"soak min {minute + 1}"))
            else:
                rows.append(await load.hold(args.stage_s, f"ramp {share:.0%}"))
            if rows[-1]["p99_ms"] > COLLAPSE_P99_S * 1000:
                print(f"delivery p99 over {COLLAPSE_P99_S}s: the ramp stops here")
                break
    finally:
        await load.stop()
    await load.ledger.quiesce(timeout=30)
    verdict = await load.ledger.verdict()
    print(f"\nLoad result ({os.cpu_count()} CPUs, 2 server processes, coach on, loopback)")
    best = max(rows, key=lambda r: r["held"]) if rows else None
    if best:
        print(
            f"  most connections held: {best['held']} ({best['conversations']} conversations), "
            f"delivered {best['delivered_per_s']:.0f} msgs/s, p50 {best['p50_ms']:.1f} ms, "
            f"p99 {best['p99_ms']:.1f} ms, p999 {best['p999_ms']:.1f} ms"
        )
    print(f"  idle connections refused: {load.connect_failures}")
    print(
        f"  acknowledged {verdict.acked}, lost {len(verdict.lost)}, "
        f"duplicated {len(verdict.duplicated)}, stored twice {len(verdict.stored_twice)}, "
        f"unacknowledged at the end {verdict.unacked}"
    )
    print(f"  errors by code: {dict(verdict.errors)}; closes by code: {dict(verdict.closes)}")
    print("  RSS per server process over time (s: MB, MB):")
    for t, row in load.rss[:: max(1, len(load.rss) // 12)]:
        print(f"    {t:6.0f}: " + ", ".join(f"{x:.0f}" for x in row))
    if args.soak_minutes and len(rows) >= 2:
        first, last = rows[0]["rss_mb"], rows[-1]["rss_mb"]
        growth = [b - a for a, b in zip(first, last, strict=True)]
        print(f"  soak RSS growth from minute 1 to {len(rows)}: {growth} MB")
    await asyncio.gather(*(ws.close() for ws in load.idle), return_exceptions=True)
    await asyncio.gather(*(p.stop() for p in load.ledger.peers), return_exceptions=True)
    for line in verdict.lost[:5] + verdict.duplicated[:5]:
        print("   ", line)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--conversations", type=int, default=2500)
    parser.add_argument("--stage-s", type=float, default=20.0)
    parser.add_argument("--soak-minutes", type=float, default=0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.connections)), hard))
    redis_proc, redis_url, tmp = start_redis()
    data = Path(tempfile.mkdtemp(prefix="tactline-load-"))
    servers = [Server(server_env(redis_url, data)) for _ in range(2)]
    try:
        for s in servers:
            s.wait_ready()
        args.redis_pid = redis_proc.pid
        return asyncio.run(run(args, redis_url, servers))
    finally:
        for s in servers:
            s.stop()
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
