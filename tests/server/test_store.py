"""Store writes that share a round trip to Redis (server/store.py ``Batcher``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server.store import Store, conv_key


@pytest.fixture
async def r(redis_db: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_db, decode_responses=True)
    yield client
    await client.aclose()


async def _open(r: Redis, n: int) -> None:
    """Open conversations c0 … c<n-1>, of visitors v0 … v<n-1>."""
    for i in range(n):
        await r.hset(conv_key(f"c{i}", "state"), mapping={"status": "open", "visitor": f"v{i}"})


def _event(n: int) -> dict[str, object]:
    return {"v": 1, "type": "message", "id": f"m{n}", "text": f"message {n}"}


async def test_writes_made_together_each_get_their_own_outcome(r: Redis) -> None:
    store = Store(r)
    await _open(r, 20)
    await r.hset(conv_key("c3", "state"), "status", "closed")
    results = await asyncio.gather(
        *(store.append(f"c{i}", _event(i), actor=f"v:v{i}", dedup=f"d{i}") for i in range(20)),
        store.append("c5", _event(99), actor="v:someone-else"),
        store.append("c-missing", _event(98), actor="any"),
    )
    outcomes = [outcome for outcome, _ in results]
    assert outcomes[3] == "closed"
    assert outcomes[20:] == ["forbidden", "missing"]
    assert outcomes[:3] + outcomes[4:20] == ["ok"] * 19
    # Each stored event is its caller's, under the seq it was told.
    for i, (outcome, seq) in enumerate(results[:20]):
        if outcome != "ok":
            continue
        rows = await r.xrange(conv_key(f"c{i}", "events"))
        assert [row[0] for row in rows] == [seq]
        assert f'"id":"m{i}"' in rows[0][1]["e"]
    # The same writes again are recognised as duplicates, with the first seq.
    again = await asyncio.gather(
        *(store.append(f"c{i}", _event(i), actor=f"v:v{i}", dedup=f"d{i}") for i in range(20))
    )
    assert [x for i, x in enumerate(again) if i != 3] == [
        ("dup", seq) for i, (_, seq) in enumerate(results[:20]) if i != 3
    ]


async def test_writes_go_on_after_redis_forgets_its_scripts(r: Redis) -> None:
    store = Store(r)
    await _open(r, 5)
    first = await asyncio.gather(*(store.append(f"c{i}", _event(i), actor="any") for i in range(5)))
    assert {o for o, _ in first} == {"ok"}
    await r.script_flush()  # as after a Redis restart without its scripts
    second = await asyncio.gather(
        *(store.append(f"c{i}", _event(10 + i), actor="any") for i in range(5))
    )
    assert {o for o, _ in second} == {"ok"}
    for i in range(5):
        assert await r.xlen(conv_key(f"c{i}", "events")) == 2


async def test_a_failed_connection_fails_every_write_of_the_batch(r: Redis) -> None:
    await _open(r, 3)
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    store_dead = Store(dead)
    try:
        results = await asyncio.gather(
            *(store_dead.append(f"c{i}", _event(i), actor="any") for i in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(x, Exception) for x in results), results
        assert [await r.xlen(conv_key(f"c{i}", "events")) for i in range(3)] == [0, 0, 0]
    finally:
        await dead.aclose()
