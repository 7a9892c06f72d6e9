"""Live coaching under load: draft → coach latency, and what coaching costs the relay.

    .venv/bin/python bench/coaching.py [--agents 500] [--seconds 20] [--workers 2]

Each of N agents has one conversation with one visitor. Visitors write one
100-byte message a second; in the coached run each agent also sends a
``draft`` every 150 ms (the console's debounce), typing real agents' replies
from the corpus word by word. Prints p50/p99 draft → coach latency (until
the answer to that draft or to a newer one: a draft that arrives after a
newer one was answered is not answered), and the
visitor → agent message latency of the same load with and without coaching,
with their ratio. Targets: draft p99 <= 50 ms; coaching raises message p99
by at most 20%. Loopback only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_spec = importlib.util.spec_from_file_location("bench_relay", ROOT / "bench" / "relay.py")
assert _spec is not None and _spec.loader is not None
relay_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(relay_bench)

DRAFT_EVERY_S = 0.150
WARM_UP_S = 5.0  # for the draft checkers to load the rules
PAYLOAD = "x" * 100
CORPUS = (
    Path(os.environ.get("TACTLINE_CORPORA") or ROOT.parent / "shared" / "corpora")
    / "twitter-care-agent.jsonl"
)


def replies() -> list[str]:
    if CORPUS.exists():
        with CORPUS.open(encoding="utf-8") as fh:
            texts = [json.loads(line)["text"] for line in fh if line.strip()]
    else:
        texts = []
    texts += ["I don't know, that's not my job.", "Calm down, the company won't agree to that."]
    return texts


async def wait_ready(target: Any, path: str, timeout: float = 120) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        with contextlib.suppress(Exception):
            if (await target.http.get(path)).status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise TimeoutError("server not ready")


async def run(target: Any, n: int, seconds: float, drafts: bool) -> dict[str, Any]:
    # Without the coach the server is never "ready" (rules not loaded); it is up.
    await wait_ready(target, "/readyz" if drafts else "/healthz")
    await target.prepare_agents(n)
    conv_of_agent: dict[int, str] = {}
    seen: dict[tuple[int, str], float] = {}  # (agent, message id) -> latency, once each
    draft_lat: list[float] = []
    # Per agent: draft id -> when it was sent, until it or a newer draft is answered.
    sent_at: dict[int, dict[int, float]] = {}
    errors: dict[str, int] = {}

    def lost_connection(who: str, exc: Exception) -> None:
        key = f"{who} connection closed ({exc.__class__.__name__})"
        errors[key] = errors.get(key, 0) + 1

    def on_agent(i: int, raw: str) -> None:
        if '"type":"assignment"' in raw:
            conv_of_agent[i] = json.loads(raw)["conversation"]
            return
        if '"type":"coach"' in raw:
            frame = json.loads(raw)
            # The agent sees suggestions for what they typed once this draft or a
            # newer one is answered (a draft older than an answered one gets none).
            now = time.perf_counter()
            waiting = sent_at.get(i, {})
            for j in [j for j in waiting if j <= frame["draft_id"]]:
                draft_lat.append(now - waiting.pop(j))
            return
        if '"type":"error"' in raw:
            code = json.loads(raw).get("code", "?")
            errors[code] = errors.get(code, 0) + 1
            return
        if '"type":"message"' in raw:
            frame = json.loads(raw)
            text = frame.get("text", "")
            if frame.get("from", {}).get("role") == "visitor" and text.startswith("t"):
                seen[(i, frame.get("id"))] = time.time() - float(text[1 : text.index(" ")])

    # Every client reads from the moment it is online, as a browser would.
    async def agent(i: int) -> Any:
        ws = await target.agent(i, capacity=1)
        readers.append(
            asyncio.create_task(relay_bench.drain(ws, lambda raw, i=i: on_agent(i, raw)))
        )
        return ws

    readers: list[asyncio.Task[None]] = []
    agents: list[Any] = []
    for first in range(0, n, 50):
        agents += await asyncio.gather(*(agent(i) for i in range(first, min(n, first + 50))))
    visitors = []
    for first in range(0, n, 50):
        batch = await asyncio.gather(*(target.visitor(i) for i in range(first, min(n, first + 50))))
        visitors += batch
        readers += [asyncio.create_task(relay_bench.drain(v, lambda _: None)) for v, _ in batch]
    await asyncio.sleep(2.0)  # every conversation assigned
    if drafts:
        # A server in use has had drafts before: its draft checkers (one per process,
        # started with the first draft) are running when the timed part begins.
        for i, conv in conv_of_agent.items():
            warm = {"v": 1, "type": "draft", "conversation": conv, "draft_id": 0, "text": "Hi"}
            await agents[i].send(json.dumps(warm))
        await asyncio.sleep(WARM_UP_S)

    start = time.time() + 0.5
    texts = replies()

    async def visitor_loop(i: int) -> None:
        ws, conv = visitors[i]
        offset = i / n
        for k in range(int(seconds)):
            await asyncio.sleep(max(0.0, start + offset + k - time.time()))
            text = f"t{time.time():.6f} "
            try:
                await ws.send(target.frame(conv, text + PAYLOAD[: 100 - len(text)], f"t{i}-{k}"))
            except websockets.ConnectionClosed as exc:
                lost_connection("visitor", exc)
                return

    async def agent_loop(i: int) -> None:
        conv = conv_of_agent.get(i)
        if conv is None:
            return
        rng = random.Random(i)
        ws = agents[i]
        draft_id = 0
        words: list[str] = []
        deadline = start + seconds
        await asyncio.sleep(max(0.0, start + rng.random() * DRAFT_EVERY_S - time.time()))
        while time.time() < deadline:
            if not words:
                words = rng.choice(texts).split()
                typed: list[str] = []
            typed.append(words.pop(0))
            draft_id += 1
            sent_at.setdefault(i, {})[draft_id] = time.perf_counter()
            frame = {
                "v": 1,
                "type": "draft",
                "conversation": conv,
                "draft_id": draft_id,
                "text": " ".join(typed),
            }
            try:
                await ws.send(json.dumps(frame))
            except websockets.ConnectionClosed as exc:
                lost_connection("agent", exc)
                return
            await asyncio.sleep(DRAFT_EVERY_S)

    jobs = [visitor_loop(i) for i in range(n)]
    if drafts:
        jobs += [agent_loop(i) for i in range(n)]
    await asyncio.gather(*jobs)
    await asyncio.sleep(1.0)
    for task in readers:
        task.cancel()
    await relay_bench.close_all(agents, visitors)
    msg_lat = list(seen.values())
    out: dict[str, Any] = {
        "assigned": len(conv_of_agent),
        "errors": errors,
        "messages_sent": n * int(seconds),
        "messages_delivered": len(seen),
    }
    for name, samples in (("msg", msg_lat), ("draft", draft_lat)):
        samples.sort()
        if samples:
            out[name] = {
                "n": len(samples),
                "p50_ms": statistics.median(samples) * 1000,
                "p99_ms": samples[max(0, int(len(samples) * 0.99) - 1)] * 1000,
            }
    out["drafts_unanswered"] = sum(len(w) for w in sent_at.values())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    redis_proc, redis_url, tmp = relay_bench.start_redis()
    results: dict[str, Any] = {}
    try:
        for label, coach in (("without coaching", False), ("with coaching", True)):
            target = relay_bench.Full(
                redis_url, args.workers, Path(tempfile.mkdtemp()), coach=coach
            )
            try:
                results[label] = asyncio.run(run(target, args.agents, args.seconds, drafts=coach))
            finally:
                with contextlib.suppress(Exception):
                    asyncio.run(target.http.aclose())
                target.stop()
            print(f"  {label}: {results[label]}", flush=True)
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    off, on = results["without coaching"], results["with coaching"]
    print(
        f"\nCoaching benchmark: {args.agents} agents typing (a draft every 150 ms) with "
        f"{args.agents} visitors (1 msg/s), {args.seconds:.0f} s, workers={args.workers}"
    )
    if "draft" in on:
        d = on["draft"]
        print(
            f"  draft -> coach      p50 {d['p50_ms']:7.1f} ms   p99 {d['p99_ms']:7.1f} ms   "
            f"({d['n']} drafts, {on['drafts_unanswered']} unanswered; target p99 <= 50 ms)"
        )
    if "msg" in off and "msg" in on:
        a, b = off["msg"], on["msg"]
        print(f"  message p50/p99 without coaching {a['p50_ms']:7.1f} / {a['p99_ms']:7.1f} ms")
        print(f"  message p50/p99 with coaching    {b['p50_ms']:7.1f} / {b['p99_ms']:7.1f} ms")
        print(
            f"  message p99 ratio with/without   {b['p99_ms'] / a['p99_ms']:.2f}  (target <= 1.20)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
