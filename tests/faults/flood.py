"""A visitor that floods: protocol v1 ``message`` frames at a fixed rate.

    python -m tests.faults.flood WS_BASE TOKEN --rate 10000 --seconds 4

Runs in its own process so that the flood does not share a CPU with the
clients whose latency is measured. It sends in batches every 10 ms, reads
what comes back, and when the server closes the connection it reconnects at
once with the same token, as a hostile client would. Prints one JSON line:
frames sent, messages acknowledged, errors by code, closes by code,
connections opened. Loopback only; stops by itself after ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import websockets

BATCH_EVERY_S = 0.01


async def flood(ws_base: str, token: str, rate: float, seconds: float) -> dict[str, Any]:
    host = urlsplit(ws_base).hostname
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit(f"refusing to flood {host}: loopback only")
    stats: dict[str, Any] = {"sent": 0, "acked": 0, "connections": 0, "refused": 0}
    errors: Counter[str] = Counter()
    closes: Counter[int] = Counter()
    per_batch = max(1, round(rate * BATCH_EVERY_S))
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        try:
            ws = await asyncio.wait_for(
                websockets.connect(ws_base + "/ws/visitor", open_timeout=2, close_timeout=1), 3
            )
        except (OSError, TimeoutError, websockets.InvalidStatus):
            stats["refused"] += 1
            await asyncio.sleep(0.01)
            continue
        stats["connections"] += 1

        async def read(ws: websockets.ClientConnection) -> None:
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") == "ack":
                    stats["acked"] += 1
                elif frame.get("type") == "error":
                    errors[frame.get("code", "?")] += 1

        reader = asyncio.create_task(read(ws))
        try:
            await ws.send(json.dumps({"v": 1, "type": "hello", "token": token}))
            next_batch = time.monotonic()
            while time.monotonic() < deadline:
                for _ in range(per_batch):
                    n += 1
                    frame = {"v": 1, "type": "message", "id": f"f{n}", "text": "x"}
                    await ws.send(json.dumps(frame))
                    stats["sent"] += 1
                next_batch += BATCH_EVERY_S
                await asyncio.sleep(max(0.0, next_batch - time.monotonic()))
        except websockets.ConnectionClosed as exc:
            closes[exc.rcvd.code if exc.rcvd else 1006] += 1
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader, 1)
            reader.cancel()
    stats["seconds"] = seconds
    stats["errors"] = dict(errors)
    stats["closes"] = {str(k): v for k, v in closes.items()}
    return stats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ws_base")
    parser.add_argument("token")
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(flood(args.ws_base, args.token, args.rate, args.seconds))))


if __name__ == "__main__":
    main()
