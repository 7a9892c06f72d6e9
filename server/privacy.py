"""Retention and deletion of visitors' data.

- Conversations closed more than ``TACTLINE_RETENTION_DAYS`` ago are removed
  with their events, flags and coaching records (checked hourly).
- Deleting a visitor (GDPR) removes all their conversations and revokes
  their tokens: a token of a deleted visitor is refused at ``hello``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import cast

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse

from server import false_alarms
from server.store import G, conv_key, now_ms

log = logging.getLogger("tactline.privacy")

CONVERSATION_PARTS = (
    "events",
    "state",
    "dedup",
    "coach",
    "flags",
    "coachlog",
    "coach-lock",
    "scripts",
)
# Timings
RETENTION_INTERVAL_S = 3600.0
# Limits
PURGE_BATCH = 500


def deleted_key(visitor: str) -> str:
    return f"{G}vdeleted:{visitor}"


async def delete_conversation(redis: Redis, conv: str) -> None:
    state = cast(dict[str, str], await redis.hgetall(conv_key(conv, "state")))
    agent = state.get("agent") or ""
    visitor = state.get("visitor") or ""
    flag_ids = cast(list[str], await redis.hkeys(conv_key(conv, "flags")))
    flag_refs = [false_alarms.ref_of(conv, f) for f in flag_ids]
    await redis.delete(*(conv_key(conv, part) for part in CONVERSATION_PARTS))
    pipe = redis.pipeline(transaction=False)
    for index in ("convs", "flagged", "coach-wait", "queue", "left"):
        pipe.zrem(G + index, conv)
    for table in ("qlang", "qteam", "assign"):
        pipe.hdel(G + table, conv)
    if agent:
        pipe.zrem(f"{G}ahist:{agent}", conv)
        pipe.srem(f"{G}aconvs:{agent}", conv)
    if visitor:
        pipe.zrem(f"{G}vconvs:{visitor}", conv)
    if flag_refs:  # the false alarms stay counted; nobody can mark these flags again
        pipe.hdel(false_alarms.REFS, *flag_refs)
        pipe.zrem(false_alarms.CHECK, *flag_refs)
    await pipe.execute()


async def delete_visitor(redis: Redis, visitor: str) -> int:
    """Remove every conversation of ``visitor`` and revoke their tokens."""
    await redis.set(deleted_key(visitor), str(now_ms()))
    convs = cast(list[str], await redis.zrange(f"{G}vconvs:{visitor}", 0, -1))
    for conv in convs:
        await delete_conversation(redis, conv)
    await redis.delete(f"{G}vconvs:{visitor}", f"{G}vopen:{visitor}")
    log.info("deleted visitor %s: %d conversations", visitor, len(convs))
    return len(convs)


async def purge_expired(redis: Redis, retention_days: int, now: int | None = None) -> int:
    """Remove closed conversations older than the retention period."""
    cutoff = (now if now is not None else now_ms()) - retention_days * 86_400_000
    removed = 0
    while True:
        old = cast(
            list[str],
            await redis.zrangebyscore(f"{G}convs", "-inf", cutoff, start=0, num=PURGE_BATCH),
        )
        batch = 0
        for conv in old:
            status = await redis.hget(conv_key(conv, "state"), "status")
            if status not in (None, "closed"):
                continue  # still open: kept until it closes
            await delete_conversation(redis, conv)
            batch += 1
        removed += batch
        if len(old) < PURGE_BATCH or batch == 0:
            return removed


async def retention_loop(redis: Redis, retention_days: int) -> None:
    while True:
        try:
            removed = await purge_expired(redis, retention_days)
            if removed:
                log.info("retention: removed %d conversations", removed)
        except Exception:  # noqa: BLE001 - the loop must go on
            log.exception("retention sweep failed")
        await asyncio.sleep(RETENTION_INTERVAL_S)


async def api_delete_visitor(request: Request) -> JSONResponse:
    from server.api import _caller, _relay
    from server.errors import ApiError

    _, role = await _caller(request)
    if role != "supervisor":
        raise ApiError(403, "forbidden", "supervisors only")
    visitor = request.path_params["visitor"]
    removed = await delete_visitor(_relay(request).redis, visitor)
    return JSONResponse({"visitor": visitor, "conversations_deleted": removed})


def cli_delete(args: argparse.Namespace) -> int:
    """``tactline visitors delete ID``."""
    from server.config import ConfigError, load_settings
    from server.embedded_redis import run_with_redis

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    removed = run_with_redis(settings, lambda r: delete_visitor(r, args.visitor))
    print(f"deleted visitor {args.visitor}: {removed} conversation(s) and their tokens")
    return 0
