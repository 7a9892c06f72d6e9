"""False alarms and the rule-quality report: each flag counted once, whatever
fails or runs at the same time, on the real server and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from redis.asyncio import Redis

from server import redisconn
from server.coaching import FLAGGED, RULE_FIRES, day_of, rule_fires_key
from server.false_alarms import CHECK, REFS, ref_of
from server.privacy import delete_conversation
from server.store import G, conv_key
from tests.server.support import make_account, running, session_token

RULE = "en.dont_know"
#: The hash the report counts false alarms in (rule -> count).
COUNTS = G + "rule-false"
REPAIR_AFTER_S = 0.5


async def add_flags(
    redis: Redis, n: int, rule: str = RULE, ts: int | None = None
) -> list[tuple[str, str]]:
    """``n`` flags as the coach stores them, one per conversation; raised at ``ts`` (ms)
    and counted for its day, or stored without a time as flags once were."""
    out = []
    for i in range(n):
        conv, flag_id = f"c_{rule.replace('.', '_')}_{i}", f"f_{i:012x}"
        record: dict[str, Any] = {
            "id": flag_id,
            "conversation": conv,
            "rule": rule,
            "category": "dont_know",
            "severity": "warning",
            "text": "I don't know",
            "outcome": "ignored",
            "review": None,
        }
        if ts is not None:
            record["ts"] = ts
            await redis.hincrby(rule_fires_key(day_of(ts)), rule, 1)
        await redis.hset(conv_key(conv, "flags"), flag_id, json.dumps(record))
        await redis.zadd(FLAGGED, {conv: i})
        await redis.hincrby(RULE_FIRES, rule, 1)
        out.append((conv, flag_id))
    return out


async def review_of(redis: Redis, flag: tuple[str, str]) -> dict[str, Any]:
    conv, flag_id = flag
    record: dict[str, Any] = json.loads(await redis.hget(conv_key(conv, "flags"), flag_id) or "{}")
    return dict(record["review"])


async def supervisor(srv: Any, redis_db: str, name: str) -> httpx.AsyncClient:
    await make_account(redis_db, name, role="supervisor")
    token = await session_token(srv.base, name)
    return httpx.AsyncClient(
        base_url=srv.base, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


async def mark(sup: httpx.AsyncClient, flag: tuple[str, str], status: str) -> httpx.Response:
    conv, flag_id = flag
    return await sup.post(
        f"/api/review/flags/{flag_id}", params={"conversation": conv}, json={"status": status}
    )


async def false_alarms(sup: httpx.AsyncClient, rule: str = RULE, day: str = "") -> int:
    """The rule's false alarms in the report, all time or among the flags of ``day``."""
    params = {"from": day, "to": day} if day else {}
    rows = (await sup.get("/api/review/rule-quality", params=params)).json()
    return sum(int(r["false_alarms"]) for r in rows if r["rule"] == rule)


@contextlib.asynccontextmanager
async def count_fails(redis: Redis) -> AsyncIterator[None]:
    """Every write to the false-alarm counts fails meanwhile, as when the node
    holding them is gone: the flag's own slot still takes writes."""
    kept = G + "rule-false-kept"
    had = await redis.exists(COUNTS)
    if had:
        await redis.rename(COUNTS, kept)
    await redis.set(COUNTS, "not a hash")  # HINCRBY on it fails with WRONGTYPE
    try:
        yield
    finally:
        await redis.delete(COUNTS)
        if had:
            await redis.rename(kept, COUNTS)


@contextlib.asynccontextmanager
async def review_server(redis_db: str) -> AsyncIterator[tuple[Redis, httpx.AsyncClient, Any]]:
    conns = await redisconn.connect(redis_db)  # a cluster too (tests/faults/test_cluster.py)
    try:
        async with (
            running(redis_db, repair_after_s=REPAIR_AFTER_S) as srv,
            await supervisor(srv, redis_db, "sanja") as sup,
        ):
            yield conns.commands, sup, srv
    finally:
        await conns.aclose()


async def test_a_false_alarm_marked_twice_counts_once(redis_db: str) -> None:
    async with review_server(redis_db) as (redis, sup, _):
        first, second = await add_flags(redis, 2)
        for _ in range(2):
            assert (await mark(sup, first, "false_alarm")).status_code == 200
        assert await false_alarms(sup) == 1
        # The flag was marked, then counting it failed: the supervisor sends it again.
        async with count_fails(redis):
            assert (await mark(sup, second, "false_alarm")).status_code == 500
        assert (await mark(sup, second, "false_alarm")).status_code == 200
        assert (await mark(sup, second, "false_alarm")).status_code == 200
        assert await false_alarms(sup) == 2


async def test_only_a_mark_left_uncounted_waits_for_the_report(redis_db: str) -> None:
    # The report settles at most MAX_SETTLE flags a read: counted marks must not
    # queue up there ahead of the ones a process left undone.
    async with review_server(redis_db) as (redis, sup, _):
        counted, failing = await add_flags(redis, 2)
        for status in ("false_alarm", "reviewed"):
            assert (await mark(sup, counted, status)).status_code == 200
        assert await redis.zcard(CHECK) == 0
        async with count_fails(redis):
            assert (await mark(sup, failing, "false_alarm")).status_code == 500
        assert await redis.zrange(CHECK, 0, -1) == [ref_of(*failing)]
        assert (await mark(sup, failing, "false_alarm")).status_code == 200
        assert await redis.zcard(CHECK) == 0
        assert await false_alarms(sup) == 1


async def test_false_alarm_then_reviewed_then_false_alarm_counts_one(redis_db: str) -> None:
    async with review_server(redis_db) as (redis, sup, _):
        plain, failing = await add_flags(redis, 2)
        for status in ("false_alarm", "reviewed", "false_alarm"):
            assert (await mark(sup, plain, status)).status_code == 200
        assert await false_alarms(sup) == 1
        assert (await mark(sup, failing, "false_alarm")).status_code == 200
        assert await false_alarms(sup) == 2
        # Marked reviewed, but the process could not count it (as if it died there).
        async with count_fails(redis):
            assert (await mark(sup, failing, "reviewed")).status_code == 500
        assert (await review_of(redis, failing))["status"] == "reviewed"
        await asyncio.sleep(REPAIR_AFTER_S + 0.2)
        assert await false_alarms(sup) == 1  # the report counts what the flag says
        assert (await mark(sup, failing, "false_alarm")).status_code == 200
        assert await false_alarms(sup) == 2


async def test_supervisors_marking_at_once_count_each_flag_once(redis_db: str) -> None:
    async with review_server(redis_db) as (redis, sup, srv):
        flags = await add_flags(redis, 10)
        async with await supervisor(srv, redis_db, "goran") as other:
            results = await asyncio.gather(
                *(mark(s, f, "false_alarm") for f in flags for s in (sup, other))
            )
            assert {r.status_code for r in results} == {200}
            assert await false_alarms(sup) == len(flags)
            # One says reviewed, the other false alarm: the count follows whoever was last.
            await asyncio.gather(
                *(
                    mark(s, f, st)
                    for f in flags
                    for s, st in ((sup, "reviewed"), (other, "false_alarm"))
                )
            )
        final = [await review_of(redis, f) for f in flags]
        assert await false_alarms(sup) == sum(r["status"] == "false_alarm" for r in final)
        assert [r["version"] for r in final] == [4] * len(flags)  # no mark was lost


async def test_deleting_a_conversation_keeps_its_false_alarms_counted(redis_db: str) -> None:
    async with review_server(redis_db) as (redis, sup, _):
        [flag] = await add_flags(redis, 1)
        assert (await mark(sup, flag, "false_alarm")).status_code == 200
        await delete_conversation(redis, flag[0])
        assert await false_alarms(sup) == 1
        assert await redis.hlen(REFS) == 0 and await redis.zcard(CHECK) == 0


async def test_a_false_alarm_stored_before_reviews_had_versions_is_uncounted_once(
    redis_db: str,
) -> None:
    async with review_server(redis_db) as (redis, sup, _):
        [flag] = await add_flags(redis, 1)
        conv, flag_id = flag
        record = json.loads(await redis.hget(conv_key(conv, "flags"), flag_id) or "{}")
        record["review"] = {"status": "false_alarm", "note": "", "by": "sanja", "ts": 1}
        await redis.hset(conv_key(conv, "flags"), flag_id, json.dumps(record))
        await redis.hincrby(COUNTS, RULE, 1)  # counted when it was marked
        for status in ("reviewed", "reviewed", "false_alarm", "reviewed"):
            assert (await mark(sup, flag, status)).status_code == 200
        assert await false_alarms(sup) == 0


async def test_a_false_alarm_counts_in_the_period_of_the_day_its_flag_fired(
    redis_db: str,
) -> None:
    raised = 1_772_452_800_000  # 2026-03-02 12:00 UTC
    day, next_day = "2026-03-02", "2026-03-03"
    async with review_server(redis_db) as (redis, sup, _):
        plain, failing = await add_flags(redis, 2, ts=raised)
        for status in ("false_alarm", "reviewed", "false_alarm"):
            assert (await mark(sup, plain, status)).status_code == 200
        assert await false_alarms(sup, day=day) == 1
        rows = (await sup.get("/api/review/rule-quality", params={"from": day})).json()
        assert rows == [{"rule": RULE, "fires": 2, "false_alarms": 1, "rate": 0.5}]
        # Marked the day after, still counted on the day the flag fired.
        assert await false_alarms(sup, day=next_day) == 0
        # A mark left uncounted is counted for its day too when the report repairs it.
        async with count_fails(redis):
            assert (await mark(sup, failing, "false_alarm")).status_code == 500
        await asyncio.sleep(REPAIR_AFTER_S + 0.2)
        assert await false_alarms(sup, day=day) == 2
        assert await false_alarms(sup) == 2


async def test_unmarking_a_false_alarm_counted_before_days_were_leaves_its_day_at_zero(
    redis_db: str,
) -> None:
    async with review_server(redis_db) as (redis, sup, _):
        [flag] = await add_flags(redis, 1, ts=1_772_452_800_000)
        conv, flag_id = flag
        record = json.loads(await redis.hget(conv_key(conv, "flags"), flag_id) or "{}")
        record["review"] = {"status": "false_alarm", "note": "", "by": "sanja", "ts": 1}
        await redis.hset(conv_key(conv, "flags"), flag_id, json.dumps(record))
        await redis.hincrby(COUNTS, RULE, 1)  # counted all time when it was marked
        assert (await mark(sup, flag, "reviewed")).status_code == 200
        assert await false_alarms(sup) == 0
        assert await false_alarms(sup, day="2026-03-02") == 0
        assert (await mark(sup, flag, "false_alarm")).status_code == 200
        assert await false_alarms(sup, day="2026-03-02") == 1
