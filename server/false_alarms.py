"""A flag's review and the false alarms counted per rule (docs/coaching.md).

The review lives with the flag in ``{conv:<id>}:flags``; the count per rule
lives under ``{tl}``. In a Redis Cluster these are two hash slots, so no one
transaction changes both. Instead:

- The review is the truth. It has a version, and only a compare-and-set
  script in the conversation's slot changes it: two supervisors marking one
  flag at once are put in order, never merged.
- The count follows the review. ``{tl}:rule-false-refs`` holds, per flag, the
  version and status the count holds; one script in the ``{tl}`` slot moves
  the count and that entry together and ignores a version not newer than the
  entry's. Counting a review twice, or an older one late, changes nothing.
- Before the review changes, the flag goes into ``{tl}:rule-false-check``,
  and the count takes it out again unless a later mark put it there since. A
  process that dies between the two writes leaves it there, and reading the
  report counts the review of every flag left there longer than
  ``TACTLINE_REPAIR_AFTER_S``.

Redis keys:

- ``{tl}:rule-false``        hash rule -> false alarms
- ``{tl}:rule-false:<day>``  the same for the flags raised on one day (UTC), moved by the
  same script (a flag keeps its day, so its marks move one day's count)
- ``{tl}:rule-false-refs``   hash "<conversation>/<flag>" -> "<version> <status>" counted
- ``{tl}:rule-false-check``  zset "<conversation>/<flag>" -> when it was last marked (ms)
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from redis.asyncio import Redis

from server.coaching import day_of
from server.store import G, conv_key

log = logging.getLogger("tactline.review")

COUNTS = G + "rule-false"
REFS = G + "rule-false-refs"
CHECK = G + "rule-false-check"
FALSE_ALARM = "false_alarm"

# Limits
MAX_MARK_TRIES = 20
MAX_SETTLE = 1000

# KEYS: the conversation's flags. ARGV: flag id, the record as read, the record to write.
SET_REVIEW = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# KEYS: check. ARGV: ref, now (ms). Notes a flag as being marked, later than any
# mark before noted it (two marks in one millisecond get two times), so that a
# mark clears its own note and never a later one's. Returns the time noted.
NOTE = """
local at = tonumber(ARGV[2])
local noted = redis.call('ZSCORE', KEYS[1], ARGV[1])
if noted and tonumber(noted) >= at then at = tonumber(noted) + 1 end
redis.call('ZADD', KEYS[1], at, ARGV[1])
return at
"""

# KEYS: counts, refs, check, and the counts of the flag's day if it has one. ARGV:
# ref, rule, version, status, and a time: the check entry goes if it is no newer
# ('' keeps it). The count changes first: a failed write leaves the entry as it
# was. Returns 1 if the count took the review. A day's count never goes below 0: a
# false alarm counted before days were counted was never in it.
COUNT = """
local held = redis.call('HGET', KEYS[2], ARGV[1]) or '0 '
local sep = string.find(held, ' ', 1, true)
local version, was = tonumber(string.sub(held, 1, sep - 1)), string.sub(held, sep + 1)
local took = 0
if tonumber(ARGV[3]) > version then
  local before, after = was == 'false_alarm', ARGV[4] == 'false_alarm'
  if after and not before then
    redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
    if KEYS[4] then redis.call('HINCRBY', KEYS[4], ARGV[2], 1) end
  end
  if before and not after then
    redis.call('HINCRBY', KEYS[1], ARGV[2], -1)
    if KEYS[4] and tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0') > 0 then
      redis.call('HINCRBY', KEYS[4], ARGV[2], -1)
    end
  end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3] .. ' ' .. ARGV[4])
  took = 1
end
if ARGV[5] ~= '' then
  local marked = redis.call('ZSCORE', KEYS[3], ARGV[1])
  if marked and tonumber(marked) <= tonumber(ARGV[5]) then redis.call('ZREM', KEYS[3], ARGV[1]) end
end
return took
"""


class FlagBusy(Exception):
    """The flag changed under every try (others keep marking it)."""


def ref_of(conv: str, flag_id: str) -> str:
    return f"{conv}/{flag_id}"


def day_key(day: str) -> str:
    """The false alarms per rule among the flags raised on ``day`` (YYYY-MM-DD, UTC)."""
    return f"{COUNTS}:{day}"


def _day_of(flag: dict[str, Any]) -> str:
    """The day the flag was raised on, '' for a flag stored without its time."""
    ts = flag.get("ts")
    return day_of(int(ts)) if isinstance(ts, int | float) and ts > 0 else ""


async def _count(
    redis: Redis,
    ref: str,
    flag: dict[str, Any],
    version: int,
    status: str,
    settled_before: str = "",
) -> bool:
    script = redis.register_script(COUNT)
    day = _day_of(flag)
    keys = [COUNTS, REFS, CHECK] + ([day_key(day)] if day else [])
    took = await script(
        keys=keys, args=[ref, str(flag.get("rule", "")), version, status, settled_before]
    )
    return bool(took)


async def mark(
    redis: Redis, conv: str, flag_id: str, review: dict[str, Any], now: int
) -> dict[str, Any] | None:
    """Set a flag's review (``status``, ``note``, ``by``, ``ts``) and count it for its
    rule; the flag as stored, or None if there is no such flag."""
    key = conv_key(conv, "flags")
    ref = ref_of(conv, flag_id)
    set_review = redis.register_script(SET_REVIEW)
    note = redis.register_script(NOTE)
    for _ in range(MAX_MARK_TRIES):
        raw = cast(str | None, await redis.hget(key, flag_id))
        if raw is None:
            return None
        flag = json.loads(raw)
        before = flag.get("review") or {}
        if before.get("status") == FALSE_ALARM and "version" not in before:
            # Marked before reviews had versions: the count holds it already.
            await redis.hsetnx(REFS, ref, f"0 {FALSE_ALARM}")
        version = int(before.get("version", 0)) + 1
        flag["review"] = {**review, "version": version}
        written = json.dumps(flag, ensure_ascii=False)
        # Noted after the read: a mark whose review was overwritten noted before this
        # one, so counting it cannot clear this mark's note.
        noted = int(await note(keys=[CHECK], args=[ref, now]))
        if await set_review(keys=[key], args=[flag_id, raw, written]):
            status = str(review["status"])
            await _count(redis, ref, flag, version, status, str(noted))
            return cast(dict[str, Any], flag)
    raise FlagBusy(flag_id)


async def settle(redis: Redis, older_than_ms: int, now: int) -> int:
    """Count the reviews of flags marked more than ``older_than_ms`` ago that a
    process may have left uncounted; how many were."""
    cutoff = now - older_than_ms
    refs = cast(
        list[str], await redis.zrangebyscore(CHECK, "-inf", cutoff, start=0, num=MAX_SETTLE)
    )
    repaired = 0
    for ref in refs:
        conv, _, flag_id = ref.rpartition("/")
        raw = await redis.hget(conv_key(conv, "flags"), flag_id) if conv else None
        flag = json.loads(raw) if raw else {}
        review = flag.get("review") or {}
        # A flag that is gone (its conversation was deleted) or has no versioned
        # review has nothing to count: version 0 only clears the check entry.
        version = int(review.get("version", 0))
        status = str(review.get("status", "")) if version else ""
        if await _count(redis, ref, flag, version, status, str(cutoff)):
            repaired += 1
    if repaired:
        log.warning("counted %d flag reviews a process left uncounted", repaired)
    return repaired
