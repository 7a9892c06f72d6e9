"""Conversations, their event streams and the routing state, in Redis.

Key layout (docs/deploy.md). The keys of one conversation share the hash tag
``{conv:<id>}``; the routing keys share ``{tl}``, so every Lua script touches
one hash slot and Redis Cluster works.

- ``{conv:<id>}:events``  stream of events (field ``e``: JSON without ``seq``)
- ``{conv:<id>}:state``   hash: status, site, visitor, visitor_name, lang, agent, …
- ``{conv:<id>}:dedup``   hash: "<sender>:<client id>" -> seq
- ``{conv:<id>}:live``    pub/sub channel: events with their ``seq``
- ``{tl}:queue``          zset conversation -> priority (lower first): visitors waiting to chat
- ``{tl}:left``           zset conversation -> priority: messages left for the next agent,
  who takes one with ``accept`` (routing never hands them out)
- ``{tl}:qlang`` / ``{tl}:qteam``  hashes conversation -> queue attributes
- ``{tl}:qnot``           hash conversation -> the agent routing passes it by (who handed it
  to a team)
- ``{tl}:assign``         hash conversation -> agent
- ``{tl}:agent:<id>``     hash: status, capacity, langs, teams, idle_since, name
- ``{tl}:aconvs:<id>``    set of the agent's open conversations (a supervisor's: taken over)
- ``{tl}:online``         set of agents that may receive conversations now
- ``{tl}:online:<lang>``  the same, of those who speak ``<lang>``
- ``{tl}:active``         set of agents that are online/away or hold conversations
- ``{tl}:presence``       zset "<agent> <connection>" -> expiry (ms)
- ``{tl}:grace``          zset agent -> end of the grace period (ms)
- ``{tl}:convs``, ``{tl}:ahist:<agent>``, ``{tl}:vconvs:<visitor>``  zsets for listings
- ``{tl}:vopen:<visitor>`` the visitor's open conversation
- ``{tl}:user:<name>``    account hash; ``{tl}:users`` set of names
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

G = "{tl}:"
QUEUE_CHANNEL = "{tl}:queue-changed"

# Limits
#: Events read back, newest first, to find a conversation's last hand-off.
HANDOFF_SCAN = 200


def conv_key(conv: str, part: str) -> str:
    return f"{{conv:{conv}}}:{part}"


def live_channel(conv: str) -> str:
    return conv_key(conv, "live")


def user_channel(role: str, uid: str) -> str:
    return f"{G}u:{role}:{uid}"


def new_conversation_id() -> str:
    return "c_" + secrets.token_hex(8)


#: What a visitor who gave no name was called before each got a label of their own.
ANONYMOUS = "Visitor"


def visitor_name(visitor_id: str, name: str | None) -> str:
    """The name a visitor is shown by: the one they gave, or else "Visitor 4F2A", the
    same for one visitor id in every chat, page and export, so that the chats of
    several anonymous visitors can be told apart."""
    if name and name.strip() and name.strip() != ANONYMOUS:
        return name
    tag = hashlib.sha256(visitor_id.encode()).hexdigest()[:4].upper()
    return f"{ANONYMOUS} {tag}"


def visitor_of(state: dict[str, str]) -> dict[str, str]:
    """Who a conversation is with, as the API and the frames show it."""
    visitor = state.get("visitor", "")
    who = {"id": visitor, "name": visitor_name(visitor, state.get("visitor_name"))}
    if state.get("visitor_email"):
        who["email"] = state["visitor_email"]
    return who


def now_ms() -> int:
    return int(time.time() * 1000)


class Waiting(NamedTuple):
    """A conversation to put in the queue."""

    conv: str
    lang: str
    team: str = ""
    #: A message left for the next agent: it waits for an ``accept``, routing leaves it be.
    left: bool = False


# ------------------------------------------------------------------ Lua scripts

# KEYS: events, dedup, state. ARGV: dedup field ('' none), event JSON (no seq),
# channel, required actor ('any' | 'v:<id>' | 'a:<id>' | 'open'), then state
# field/value pairs to set with the event.
APPEND = """
local st = redis.call('HMGET', KEYS[3], 'status', 'visitor', 'agent')
if not st[1] then return {'missing'} end
local need = ARGV[4]
if need ~= 'any' then
  if st[1] == 'closed' then return {'closed'} end
  local kind = string.sub(need, 1, 2)
  if kind == 'v:' and st[2] ~= string.sub(need, 3) then return {'forbidden'} end
  if kind == 'a:' and st[3] ~= string.sub(need, 3) then return {'forbidden'} end
end
if ARGV[1] ~= '' then
  local prev = redis.call('HGET', KEYS[2], ARGV[1])
  if prev then return {'dup', prev} end
end
local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[2])
if ARGV[1] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], id) end
for i = 5, #ARGV, 2 do
  if string.sub(ARGV[i], 1, 1) == '?' then  -- set once: the first value stays
    redis.call('HSETNX', KEYS[3], string.sub(ARGV[i], 2), ARGV[i + 1])
  else
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
redis.call('HSET', KEYS[3], 'last_seq', id)
redis.call('PUBLISH', ARGV[3], '{"seq":"' .. id .. '",' .. string.sub(ARGV[2], 2))
return {'ok', id}
"""

# Taking a conversation out of the queue, and freeing its agent's seat.
_SEATS = """
local function unqueue(P, c)
  redis.call('ZREM', P .. 'queue', c)
  redis.call('ZREM', P .. 'left', c)
  redis.call('HDEL', P .. 'qlang', c)
  redis.call('HDEL', P .. 'qteam', c)
  redis.call('HDEL', P .. 'qnot', c)
end
local function free_seat(P, c, agent, now)
  redis.call('SREM', P .. 'aconvs:' .. agent, c)
  redis.call('HSET', P .. 'agent:' .. agent, 'idle_since', now)
end
"""

# Routing scripts: every key under the {tl} prefix (ARGV[1]).
_AGENTS = _SEATS + """
local P = ARGV[1]
local function load_agents(only)
  local ids = only ~= '' and {only} or redis.call('SMEMBERS', P .. 'online')
  local out = {}
  for _, a in ipairs(ids) do
    local h = redis.call('HMGET', P .. 'agent:' .. a,
                         'status', 'capacity', 'langs', 'teams', 'idle_since')
    if h[1] == 'online' and redis.call('SISMEMBER', P .. 'online', a) == 1 then
      out[#out + 1] = {id = a, cap = tonumber(h[2]) or 3,
                       open = redis.call('SCARD', P .. 'aconvs:' .. a),
                       langs = h[3] or '', teams = h[4] or '', idle = tonumber(h[5]) or 0}
    end
  end
  return out
end
local function fits(a, lang, team)
  return a.open < a.cap and string.find(a.langs, ',' .. lang .. ',', 1, true) ~= nil
     and (team == '' or string.find(a.teams, ',' .. team .. ',', 1, true) ~= nil)
end
local function take(c, a, now)
  unqueue(P, c)
  redis.call('HSET', P .. 'assign', c, a.id)
  redis.call('SADD', P .. 'aconvs:' .. a.id, c)
  redis.call('ZADD', P .. 'ahist:' .. a.id, now, c)
  redis.call('HSET', P .. 'agent:' .. a.id, 'idle_since', now)
  a.open = a.open + 1
  a.idle = now
end
"""

# Only live chats: messages left for the next agent are not in 'queue'.
# ARGV: prefix, now, only-agent ('' for all). Returns {conv, agent, ...}.
ASSIGN = (
    _AGENTS
    + """
local now = tonumber(ARGV[2])
local agents = load_agents(ARGV[3])
local out = {}
if #agents == 0 then return out end
local q = redis.call('ZRANGE', P .. 'queue', 0, 999)
for _, c in ipairs(q) do
  local lang = redis.call('HGET', P .. 'qlang', c) or ''
  local team = redis.call('HGET', P .. 'qteam', c) or ''
  local not_to = redis.call('HGET', P .. 'qnot', c) or ''
  local best = nil
  for _, a in ipairs(agents) do
    if a.id ~= not_to and fits(a, lang, team) and (best == nil or a.open < best.open
        or (a.open == best.open and a.idle < best.idle)) then
      best = a
    end
  end
  if best then
    take(c, best, now)
    out[#out + 1] = c
    out[#out + 1] = best.id
  end
end
return out
"""
)

# ARGV: prefix, now, agent, conversation ('' = the oldest live chat that fits, else the
# oldest left message that fits). Returns {'ok', conv} or {err}.
ACCEPT = (
    _AGENTS
    + """
local now = tonumber(ARGV[2])
local agents = load_agents(ARGV[3])
local a = agents[1]
if a == nil or a.open >= a.cap then return {'no_capacity'} end
local c = ARGV[4]
if c ~= '' then
  if redis.call('ZSCORE', P .. 'queue', c) == false
     and redis.call('ZSCORE', P .. 'left', c) == false then
    return {'not_queued'}
  end
  take(c, a, now)
  return {'ok', c}
end
for _, list in ipairs({'queue', 'left'}) do
  for _, q in ipairs(redis.call('ZRANGE', P .. list, 0, 999)) do
    local lang = redis.call('HGET', P .. 'qlang', q) or ''
    local team = redis.call('HGET', P .. 'qteam', q) or ''
    if fits(a, lang, team) then
      take(q, a, now)
      return {'ok', q}
    end
  end
end
return {'queue_empty'}
"""
)

# ARGV: prefix, now, conversation, from-agent ('' = any, supervisor), to-agent.
TRANSFER_TO_AGENT = (
    _AGENTS
    + """
local now = tonumber(ARGV[2])
local c = ARGV[3]
local cur = redis.call('HGET', P .. 'assign', c)
if not cur or (ARGV[4] ~= '' and cur ~= ARGV[4]) then return {'not_in_conversation'} end
local agents = load_agents(ARGV[5])
local a = agents[1]
if a == nil or (a.open >= a.cap and ARGV[6] ~= '1') or a.id == cur then
  return {'agent_unavailable'}
end
redis.call('SREM', P .. 'aconvs:' .. cur, c)
take(c, a, now)
return {'ok', cur}
"""
)

# Put conversations at the front of the queue (requeue / team transfer) or the back (new):
# of 'queue' for a live chat, of 'left' for a message left for the next agent.
# ARGV: prefix, now, front ('1'|'0'), then quadruples conv, lang, team, left ('1'|'0').
ENQUEUE = """
local P = ARGV[1]
local now = tonumber(ARGV[2])
local front = ARGV[3] == '1'
local n = 0
for i = 4, #ARGV, 4 do
  local c = ARGV[i]
  local list, other = 'queue', 'left'
  if ARGV[i + 3] == '1' then list, other = 'left', 'queue' end
  local cur = redis.call('HGET', P .. 'assign', c)
  if cur then
    redis.call('SREM', P .. 'aconvs:' .. cur, c)
    redis.call('HDEL', P .. 'assign', c)
  end
  local score = now
  if front then
    local first = redis.call('ZRANGE', P .. list, 0, 0, 'WITHSCORES')
    score = 0
    if first[2] then score = math.min(tonumber(first[2]) - 1, 0) end
  end
  redis.call('ZREM', P .. other, c)
  redis.call('ZADD', P .. list, score, c)
  redis.call('HSET', P .. 'qlang', c, ARGV[i + 1])
  if ARGV[i + 2] ~= '' then redis.call('HSET', P .. 'qteam', c, ARGV[i + 2]) end
  n = n + 1
end
return n
"""

# A visitor waiting in the queue leaves a message instead: from 'queue' to 'left', keeping
# its place among the left messages by when it was queued. ARGV: prefix, conversation.
# Returns 1, or 0 if it was not waiting (an agent took it meanwhile).
LEAVE = """
local P = ARGV[1]
local score = redis.call('ZSCORE', P .. 'queue', ARGV[2])
if not score then return 0 end
redis.call('ZREM', P .. 'queue', ARGV[2])
redis.call('ZADD', P .. 'left', score, ARGV[2])
return 1
"""

# ARGV: prefix, conversation. Returns the agent it was assigned to, or false.
RELEASE = _SEATS + """
local P = ARGV[1]
local c = ARGV[2]
unqueue(P, c)
local cur = redis.call('HGET', P .. 'assign', c)
if cur then
  redis.call('HDEL', P .. 'assign', c)
  free_seat(P, c, cur, ARGV[3])
end
return cur
"""

# A supervisor takes a conversation over, whoever had it and whatever their capacity.
# ARGV: prefix, conversation, supervisor, now. Returns the agent it was assigned to, or false.
TAKE_OVER = _SEATS + """
local P = ARGV[1]
local c = ARGV[2]
local s = ARGV[3]
unqueue(P, c)
local cur = redis.call('HGET', P .. 'assign', c)
if cur and cur ~= s then free_seat(P, c, cur, ARGV[4]) end
redis.call('HSET', P .. 'assign', c, s)
redis.call('SADD', P .. 'aconvs:' .. s, c)
redis.call('ZADD', P .. 'ahist:' .. s, ARGV[4], c)
return cur
"""

# Whether an agent may receive conversations now: in 'online', and in 'online:<lang>' for
# each language of ``langs`` (',en,sr,'), so that who speaks a language is counted at once.
_ONLINE = """
local function set_online(P, a, langs, on)
  local cmd = on and 'SADD' or 'SREM'
  redis.call(cmd, P .. 'online', a)
  for lang in string.gmatch(langs or '', '[^,]+') do
    redis.call(cmd, P .. 'online:' .. lang, a)
  end
end
"""

# Presence and grace periods. ARGV: prefix, now, grace ms.
# Returns {agent, conv, agent, conv, …} for conversations whose agent's grace ran out.
SWEEP = _ONLINE + """
local P = ARGV[1]
local now = tonumber(ARGV[2])
local grace = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', P .. 'presence', '-inf', now)
local present = {}
for _, m in ipairs(redis.call('ZRANGE', P .. 'presence', 0, -1)) do
  present[string.match(m, '^(%S+)')] = true
end
local out = {}
for _, a in ipairs(redis.call('SMEMBERS', P .. 'active')) do
  local h = redis.call('HMGET', P .. 'agent:' .. a, 'status', 'langs')
  if present[a] then
    redis.call('ZREM', P .. 'grace', a)
    if h[1] == 'online' then set_online(P, a, h[2], true) end
  else
    set_online(P, a, h[2], false)
    local deadline = redis.call('ZSCORE', P .. 'grace', a)
    if not deadline then
      redis.call('ZADD', P .. 'grace', now + grace, a)
    elseif tonumber(deadline) <= now then
      redis.call('ZREM', P .. 'grace', a)
      redis.call('SREM', P .. 'active', a)
      redis.call('HSET', P .. 'agent:' .. a, 'status', 'offline')
      for _, c in ipairs(redis.call('SMEMBERS', P .. 'aconvs:' .. a)) do
        out[#out + 1] = a
        out[#out + 1] = c
      end
    end
  end
end
return out
"""

# An agent's status and the sets that follow from it, in one step.
# KEYS: agent hash. ARGV: prefix, agent, status, capacity, name, langs, teams, now.
# Returns the agent's open conversations.
SET_STATUS = _ONLINE + """
local P = ARGV[1]
local a = ARGV[2]
set_online(P, a, redis.call('HGET', KEYS[1], 'langs'), false)  -- its languages may change
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'capacity', ARGV[4], 'name', ARGV[5],
           'langs', ARGV[6], 'teams', ARGV[7])
redis.call('HSETNX', KEYS[1], 'idle_since', ARGV[8])
if ARGV[3] == 'online' then
  set_online(P, a, ARGV[6], true)
  redis.call('SADD', P .. 'active', a)
elseif ARGV[3] == 'away' then
  redis.call('SADD', P .. 'active', a)
else
  redis.call('SREM', P .. 'active', a)
end
return redis.call('SMEMBERS', P .. 'aconvs:' .. a)
"""


class Batcher:
    """Redis commands of many callers in one round trip.

    Commands issued while the event loop is busy with other work (every
    session whose frame arrived in the same read) go to Redis together as one
    pipeline without a transaction; each caller still gets its own result or
    error, and a command alone goes straight through. One caller's commands
    keep their order: it waits for each, or issues them together. A pool
    connection is then held once per batch rather than once per command, so a
    busy process does not run out of them.

    A Redis Cluster client spreads commands over nodes itself: there every
    command goes straight through.
    """

    def __init__(self, redis: Redis) -> None:
        self.r = redis
        self.single = isinstance(redis, Redis)
        self._waiting: list[tuple[tuple[Any, ...], AsyncScript | None, asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def command(self, *args: Any) -> asyncio.Future[Any]:
        """``await batch.command("HGETALL", key)``: the reply as redis-py parses it."""
        return self._add(args, None)

    def script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """Run a registered script; loads it again if Redis forgot it."""
        return self._add(("EVALSHA", script.sha, len(keys), *keys, *args), script)

    def _add(self, args: tuple[Any, ...], script: AsyncScript | None) -> asyncio.Future[Any]:
        if not self.single:
            return asyncio.ensure_future(self._one(args, script))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.append((args, script, fut))
        return fut

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _one(self, args: tuple[Any, ...], script: AsyncScript | None) -> Any:
        if script is not None:
            n = args[2]
            return await script(keys=list(args[3 : 3 + n]), args=list(args[3 + n :]))
        return await self.r.execute_command(*args)  # type: ignore[no-untyped-call]

    async def _send(
        self, batch: list[tuple[tuple[Any, ...], AsyncScript | None, asyncio.Future[Any]]]
    ) -> None:
        results: list[Any]
        try:
            if len(batch) == 1:
                args, script, _ = batch[0]
                try:
                    results = [await self._one(args, script)]
                except RedisError as exc:
                    results = [exc]
            else:
                pipe = self.r.pipeline(transaction=False)
                for args, _, _ in batch:
                    pipe.execute_command(*args)
                results = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for *_, fut in batch:
                fut.cancel()
            raise
        except Exception as exc:  # the connection failed: every caller learns it
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (args, script, fut), res in zip(batch, results, strict=True):
            if script is not None and isinstance(res, NoScriptError):
                try:  # Redis restarted or flushed its scripts
                    res = await self._one(args, script)
                except Exception as exc:  # noqa: BLE001 - handed to the caller
                    res = exc
            if fut.done():
                continue
            if isinstance(res, Exception):
                fut.set_exception(res)
            else:
                fut.set_result(res)


#: Open conversations by when their visitor was last connected (ms), to close the
#: chats of visitors who are gone.
VISITOR_SEEN = f"{G}vseen"

# A visitor's rating of a conversation, once: score and comment together, so that a retry
# after a failure finds either both or neither. KEYS: state. ARGV: score, comment.
# Returns 1 when stored, 0 when the conversation was rated already.
RATE = """
if redis.call('HSETNX', KEYS[1], 'csat', ARGV[1]) == 0 then return 0 end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'csat_comment', ARGV[2]) end
return 1
"""


class Store:
    """All Redis access of the server."""

    def __init__(self, redis: Redis) -> None:
        self.r = redis
        self.batch = Batcher(redis)
        self._append = redis.register_script(APPEND)
        self._assign = redis.register_script(ASSIGN)
        self._accept = redis.register_script(ACCEPT)
        self._transfer = redis.register_script(TRANSFER_TO_AGENT)
        self._enqueue = redis.register_script(ENQUEUE)
        self._leave = redis.register_script(LEAVE)
        self._release = redis.register_script(RELEASE)
        self._take_over = redis.register_script(TAKE_OVER)
        self._sweep = redis.register_script(SWEEP)
        self._set_status = redis.register_script(SET_STATUS)
        self._rate = redis.register_script(RATE)

    # -------------------------------------------------------------- events

    async def append(
        self,
        conv: str,
        event: dict[str, Any],
        *,
        actor: str,
        dedup: str = "",
        state: Sequence[tuple[str, str]] = (),
    ) -> tuple[str, str | None]:
        """Store one event; returns (outcome, seq). Outcome: ok, dup, closed, forbidden, missing.

        ``state`` fields are set with the event; a name starting with ``?`` is set only if
        the conversation has none yet."""
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        args: list[str] = [dedup, body, live_channel(conv), actor]
        for k, v in state:
            args += [k, v]
        res = await self.batch.script(
            self._append,
            [conv_key(conv, "events"), conv_key(conv, "dedup"), conv_key(conv, "state")],
            args,
        )
        return str(res[0]), (str(res[1]) if len(res) > 1 else None)

    async def events_after(self, conv: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        """Events after ``after`` (exclusive) in order, or the newest ``limit`` when None."""
        key = conv_key(conv, "events")
        rows: list[tuple[str, dict[str, str]]]
        if after is None:
            rows = list(reversed(cast(Rows, await self.r.xrevrange(key, "+", "-", count=limit))))
        else:
            rows = []
            start = "(" + after
            while True:
                batch = cast(Rows, await self.r.xrange(key, start, "+", count=1000))
                rows += batch
                if len(batch) < 1000:
                    break
                start = "(" + batch[-1][0]
        return [decode_event(seq, fields["e"]) for seq, fields in rows]

    async def history(self, conv: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        events = await self.events_after(conv, None, limit + 1)
        if len(events) > limit:
            return events[1:], True
        return events, False

    async def rate(self, conv: str, score: int, comment: str) -> bool:
        """Store a conversation's rating; False when it was rated already."""
        return bool(await self._rate(keys=[conv_key(conv, "state")], args=[score, comment]))

    async def state(self, conv: str) -> dict[str, str]:
        return cast(dict[str, str], await self.batch.command("HGETALL", conv_key(conv, "state")))

    async def last_handoff(self, conv: str) -> dict[str, Any] | None:
        """The newest ``assigned`` or ``transferred`` event among the last
        ``HANDOFF_SCAN`` events, or None."""
        rows = cast(
            Rows, await self.r.xrevrange(conv_key(conv, "events"), "+", "-", count=HANDOFF_SCAN)
        )
        for seq, fields in rows:
            event = decode_event(seq, fields["e"])
            if event.get("type") in ("assigned", "transferred"):
                return event
        return None

    async def chatted_since_accepted(self, conv: str) -> bool:
        """Whether the visitor wrote in the chat (a ``message``, not a left one) after an
        agent last took their left message with ``accept``, among the last
        ``HANDOFF_SCAN`` events: from then on it is a live chat."""
        rows = cast(
            Rows, await self.r.xrevrange(conv_key(conv, "events"), "+", "-", count=HANDOFF_SCAN)
        )
        for seq, fields in rows:
            event = decode_event(seq, fields["e"])
            if event.get("type") == "assigned" and event.get("left_message"):
                return False
            if (
                event.get("type") == "message"
                and (event.get("from") or {}).get("role") == "visitor"
                and not event.get("contact")
            ):
                return True
        return False

    async def assigned_since(self, agent: str, conv: str) -> float | None:
        """When ``conv`` was last given to ``agent`` (ms), or None if it never was."""
        return await self.r.zscore(f"{G}ahist:{agent}", conv)

    async def unannounced(self, older_than_ms: int) -> list[tuple[str, str]]:
        """(conversation, agent) pairs the routing keys assigned more than
        ``older_than_ms`` ago whose conversation does not name that agent."""
        assigned = cast(dict[str, str], await self.r.hgetall(f"{G}assign"))
        if not assigned:
            return []
        pairs = list(assigned.items())
        pipe = self.r.pipeline(transaction=False)
        for conv, agent in pairs:
            pipe.hmget(conv_key(conv, "state"), "agent", "status")
            pipe.zscore(f"{G}ahist:{agent}", conv)
        res = await pipe.execute()
        cutoff = now_ms() - older_than_ms
        out = []
        for k, (conv, agent) in enumerate(pairs):
            (named, status), since = res[2 * k], res[2 * k + 1]
            if named != agent and status in ("queued", "assigned") and (since or 0) < cutoff:
                out.append((conv, agent))
        return out

    async def take_turn(self, name: str, ttl_ms: int) -> bool:
        """True for one process per ``ttl_ms`` (a job several processes run)."""
        return bool(await self.r.set(f"{G}turn:{name}", "1", nx=True, px=ttl_ms))

    async def create_conversation(
        self, *, site: str, visitor: str, visitor_name: str, lang: str, visitor_email: str = ""
    ) -> tuple[str, bool]:
        """The visitor's open conversation, created if there is none. Returns (id, created)."""
        conv = new_conversation_id()
        created = now_ms()
        ok = await self.r.set(f"{G}vopen:{visitor}", conv, nx=True)
        if not ok:
            existing = cast(str | None, await self.r.get(f"{G}vopen:{visitor}"))
            if existing:
                st = await self.state(existing)
                if st.get("status") and st["status"] != "closed":
                    return existing, False
            await self.r.set(f"{G}vopen:{visitor}", conv)
        await self.r.hset(
            conv_key(conv, "state"),
            mapping={
                "id": conv,
                "site": site,
                "visitor": visitor,
                "visitor_name": visitor_name,
                "visitor_email": visitor_email,
                "lang": lang,
                "status": "queued",
                "agent": "",
                "created": created,
                "last_seq": "",
            },
        )
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(f"{G}convs", {conv: created})
        pipe.zadd(f"{G}vconvs:{visitor}", {conv: created})
        pipe.zadd(VISITOR_SEEN, {conv: created})
        await pipe.execute()
        return conv, True

    async def visitors_seen(self, convs: Iterable[str]) -> None:
        """The visitors of ``convs`` are connected now."""
        now = now_ms()
        seen = dict.fromkeys(convs, now)
        if seen:
            await self.r.zadd(VISITOR_SEEN, seen)

    async def visitors_gone(self, before_ms: int, limit: int = 100) -> list[str]:
        """Open conversations whose visitor was last connected before ``before_ms``."""
        return cast(
            list[str],
            await self.r.zrangebyscore(VISITOR_SEEN, "-inf", before_ms, start=0, num=limit),
        )

    async def forget_visitor_seen(self, conv: str) -> None:
        await self.r.zrem(VISITOR_SEEN, conv)

    async def open_conversation_of(self, visitor: str) -> str | None:
        conv = cast(str | None, await self.r.get(f"{G}vopen:{visitor}"))
        if not conv:
            return None
        st = await self.r.hget(conv_key(conv, "state"), "status")
        return conv if st and st != "closed" else None

    async def clear_open(self, visitor: str, conv: str) -> None:
        key = f"{G}vopen:{visitor}"
        if await self.r.get(key) == conv:
            await self.r.delete(key)

    # -------------------------------------------------------------- routing

    async def enqueue(self, items: Sequence[Waiting], *, front: bool) -> None:
        args: list[Any] = [G, now_ms(), "1" if front else "0"]
        for conv, lang, team, left in items:
            args += [conv, lang, team, "1" if left else "0"]
        await self._enqueue(keys=[f"{G}queue"], args=args)
        await self.r.publish(QUEUE_CHANNEL, "1")

    async def keep_from(self, conv: str, agent: str) -> None:
        """Routing gives queued ``conv`` to anyone but ``agent`` (who handed it to a team);
        ``agent`` may still ``accept`` it. Forgotten once the chat leaves the queue."""
        await self.r.hset(f"{G}qnot", conv, agent)

    async def leave(self, conv: str) -> bool:
        """Turn a visitor's wait in the queue into a message left for the next agent;
        False if no longer waiting."""
        moved = bool(await self._leave(keys=[f"{G}queue"], args=[G, conv]))
        if moved:
            await self.r.publish(QUEUE_CHANNEL, "1")
        return moved

    async def assign(self, only_agent: str = "") -> list[tuple[str, str]]:
        res = await self._assign(keys=[f"{G}queue"], args=[G, now_ms(), only_agent])
        return [(str(res[i]), str(res[i + 1])) for i in range(0, len(res), 2)]

    async def accept(self, agent: str, conv: str) -> tuple[str, str | None]:
        """``agent`` takes ``conv`` (or the oldest that fits) out of the queue; the state's
        ``accepted_at`` says when, from which a left message's first response is timed."""
        now = now_ms()
        res = await self._accept(keys=[f"{G}queue"], args=[G, now, agent, conv])
        taken = str(res[1]) if len(res) > 1 else None
        if str(res[0]) == "ok" and taken:
            await self.r.hset(conv_key(taken, "state"), "accepted_at", str(now))
        return str(res[0]), taken

    async def transfer_to_agent(
        self, conv: str, from_agent: str, to_agent: str, *, over_capacity: bool = False
    ) -> tuple[str, str | None]:
        """Move ``conv`` to ``to_agent``, who must be online and, unless
        ``over_capacity``, have room for it."""
        res = await self._transfer(
            keys=[f"{G}assign"],
            args=[G, now_ms(), conv, from_agent, to_agent, "1" if over_capacity else "0"],
        )
        return str(res[0]), (str(res[1]) if len(res) > 1 else None)

    async def release(self, conv: str) -> str | None:
        res = await self._release(keys=[f"{G}assign"], args=[G, conv, now_ms()])
        return str(res) if res else None

    async def take_over(self, conv: str, supervisor: str) -> str | None:
        """Give ``conv`` to ``supervisor``, as routing gives a chat to an agent (so it is
        theirs after a reconnect, and closing or transferring it releases it); returns
        the agent it was assigned to, if any."""
        res = await self._take_over(keys=[f"{G}assign"], args=[G, conv, supervisor, now_ms()])
        return str(res) if res else None

    async def sweep(self, grace_ms: int) -> list[tuple[str, str]]:
        res = await self._sweep(keys=[f"{G}presence"], args=[G, now_ms(), grace_ms])
        return [(str(res[i]), str(res[i + 1])) for i in range(0, len(res), 2)]

    async def set_presence(self, members: Sequence[str], ttl_ms: int) -> None:
        if members:
            expiry = now_ms() + ttl_ms
            await self.r.zadd(f"{G}presence", {m: expiry for m in members})

    async def drop_presence(self, member: str) -> None:
        await self.r.zrem(f"{G}presence", member)

    async def set_agent_status(
        self,
        agent: str,
        name: str,
        status: str,
        capacity: int,
        langs: Sequence[str],
        teams: Sequence[str],
    ) -> list[str]:
        """Record the agent's status; returns the conversations to requeue (going offline)."""
        res = await self._set_status(
            keys=[f"{G}agent:{agent}"],
            args=[
                G,
                agent,
                status,
                capacity,
                name,
                "," + ",".join(langs) + ",",
                "," + ",".join(teams) + ",",
                now_ms(),
            ],
        )
        return sorted(res) if status == "offline" else []

    async def agent(self, agent: str) -> dict[str, str]:
        return cast(dict[str, str], await self.r.hgetall(f"{G}agent:{agent}"))

    async def agent_conversations(self, agent: str) -> list[str]:
        return sorted(cast(set[str], await self.r.smembers(f"{G}aconvs:{agent}")))

    async def online_count(self) -> int:
        return int(await self.r.scard(f"{G}online"))

    async def online_for(self, lang: str) -> int:
        """How many agents who may receive chats now speak ``lang``."""
        return int(await self.batch.command("SCARD", f"{G}online:{lang}"))

    async def online_by_lang(self, langs: Iterable[str]) -> dict[str, int]:
        """:meth:`online_for` each of ``langs``, in one round trip."""
        wanted = sorted(set(langs))
        pipe = self.r.pipeline(transaction=False)
        for lang in wanted:
            pipe.scard(f"{G}online:{lang}")
        counts = await pipe.execute() if wanted else []
        return dict(zip(wanted, map(int, counts), strict=True))

    async def queue(self) -> list[tuple[str, bool]]:
        """What waits for an agent, in order: (conversation, left message?), the
        visitors waiting to chat first, then the messages left for the next agent."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zrange(f"{G}queue", 0, -1)
        pipe.zrange(f"{G}left", 0, -1)
        live, left = cast(list[list[str]], await pipe.execute())
        return [(str(c), False) for c in live] + [(str(c), True) for c in left]

    async def queue_length(self) -> int:
        return int(await self.r.zcard(f"{G}queue"))

    async def avg_handle_s(self, default: float) -> float:
        value = await self.r.get(f"{G}avg_handle_s")
        return float(value) if value else default

    async def record_handle_time(self, seconds: float, default: float) -> None:
        current = await self.avg_handle_s(default)
        await self.r.set(f"{G}avg_handle_s", f"{0.9 * current + 0.1 * seconds:.1f}")


Rows = list[tuple[str, dict[str, str]]]


def decode_event(seq: str, body: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(body)
    event["seq"] = seq
    who = event.get("from")
    if isinstance(who, dict) and who.get("role") == "visitor":
        # Events written before visitors had labels say just "Visitor".
        who["name"] = visitor_name(str(who.get("id") or ""), who.get("name"))
    return event
