"""Live coaching inside the chat, and the records supervisors review.

The coach (coach/) is pure; this module drives it from the relay:

- drafts: each ``draft`` frame is checked at once and answered with a
  ``coach`` frame; a draft older than one already answered is dropped, so a
  fast typist never builds a backlog;
- sent agent messages: checked again, card numbers masked, a
  ``sensitive_data_request`` refused until the agent overrides; the flags are
  stored with what the agent did (``applied``, ``ignored``, ``not_seen``);
- customer messages: cues give the assigned agent ``script`` frames, at most
  once per category per cooldown; the hold timer starts. Those of a message
  nobody has the chat for yet (the one that opens it is coached while it is
  routed) wait, and the ticker gives them to the agent who gets the chat;
- a ticker nudges agents whose customers wait (any process may run it; a
  per-conversation lock keeps nudges single).

Redis keys (hash tags as in server/store.py):

- ``{conv:<id>}:coach``       JSON state of the conversation coach
- ``{conv:<id>}:flags``       hash flag id -> JSON flag record
- ``{conv:<id>}:coachlog``    list of JSON records: cues, scripts, nudges, whispers, overrides
- ``{conv:<id>}:scripts``     list of JSON ``script`` frames waiting for an agent to have the chat
- ``{tl}:coach-wait``         zset conversation -> when to look at its wait (ms)
- ``{tl}:coach-scripts``      zset conversation -> since when scripts wait for its agent (ms)
- ``{tl}:rule-fires``         hash rule -> flags it raised on sent messages, whatever the
  agent did with them (false alarms: server/false_alarms.py)
- ``{tl}:rule-fires:<day>``   the same for one day (UTC), for a period's report
- ``{tl}:score:<agent>:<day>`` hash of counters for scorecards: ``messages``, and per flag
  raised ``flags:<category>`` and ``outcome:<applied|ignored|not_seen|overridden>``
- ``{tl}:flagged``            zset conversation -> time of its last flag (ms)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from coach import FLAG_LIST, Coach, Flag, script
from coach.conversation import ConversationCoach, Nudge
from server.masking import mask_cards
from server.rules_runtime import RulesRuntime
from server.store import Batcher, decode_event

log = logging.getLogger("tactline.coaching")

G = "{tl}:"
WAIT_KEY = G + "coach-wait"
SCRIPTS_WAITING = G + "coach-scripts"
RULE_FIRES = G + "rule-fires"
FLAGGED = G + "flagged"

# Timings
TICK_INTERVAL_S = 1.0
LOCK_TTL_MS = 3000
# KEYS: coach state, lock. ARGV: lock token, state to save ('' saves nothing).
SAVE_UNLOCK = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2]) end
redis.call('DEL', KEYS[2])
return 1
"""
LOCK_RETRIES = 100
LOCK_RETRY_S = 0.01

# Limits
MAX_SHOWN_FLAGS = 200
#: Characters of the customer's message quoted around a cue.
CUE_EXCERPT = 80
MAX_LOG_RECORDS = 2000
#: Coach log records read for the scripts to hand over with a chat (the latest).
LOG_TAIL = 200
#: What a ``script`` frame says, kept in the coach log to send it again.
SCRIPT_FIELDS = ("category", "cue", "message", "scripts")
MAX_WAITING_SCRIPTS = 20  # per conversation
MAX_WAITING_CHATS_SCANNED = 500  # per tick, those holding scripts the longest first

Publish = Callable[[str, dict[str, Any]], Awaitable[None]]


def conv_key(conv: str, part: str) -> str:
    return f"{{conv:{conv}}}:{part}"


def day_of(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d")


def score_key(agent: str, day: str) -> str:
    return f"{G}score:{agent}:{day}"


def rule_fires_key(day: str) -> str:
    return f"{RULE_FIRES}:{day}"


def response_clock_start(state: dict[str, str], ts: int) -> int:
    """When the wait for a conversation's first response began (ms): when it was created,
    or, for a message left for the next agent, when an agent accepted it, so the hours it
    waited for someone to come online do not count against the agent."""
    accepted = state.get("accepted_at")
    if state.get("left_message") == "1" and accepted:
        return int(accepted)
    return int(state.get("created", ts) or ts)


def scored_outcome(record: dict[str, Any]) -> str:
    """What a scorecard counts a flag as: its outcome, or ``overridden`` when the agent
    sent the message the coach had refused."""
    return "overridden" if record.get("override") else str(record["outcome"])


@dataclass
class Drafts:
    """One agent connection's drafts in one conversation (kept in that process)."""

    last_id: int = -1
    #: Flags shown in ``coach`` frames since the last sent message.
    shown: list[Flag] = field(default_factory=list)
    #: Flags shown as they came from the draft checker (JSON), read when a message is sent.
    shown_json: list[str] = field(default_factory=list)

    def seen(self) -> list[Flag]:
        """Every flag shown since the last sent message."""
        for flags in self.shown_json:
            self.shown.extend(FLAG_LIST.validate_json(flags))
        self.shown_json.clear()
        del self.shown[:-MAX_SHOWN_FLAGS]
        return self.shown


@dataclass(frozen=True)
class SentCheck:
    """What the coach found in a message about to be sent."""

    text: str  # with card numbers masked
    masked: bool
    flags: list[Flag]

    @property
    def refused(self) -> bool:
        """Whether the coach refused it (and it goes out because the agent overrode)."""
        return any(f.category == "sensitive_data_request" for f in self.flags)


class CoachingError(Exception):
    """The coach refuses a message; carries what the agent needs to fix it."""

    def __init__(self, message: str, flags: list[Flag]) -> None:
        super().__init__(message)
        self.flags = flags


_REFUSALS = {
    "en": "This message asks for data that must never be shared in chat. "
    "Use the suggestion, or resend with override to send it anyway.",
    "sr": "Ova poruka traži podatke koji se nikada ne dele u četu. "
    "Iskoristite predlog ili pošaljite ponovo uz potvrdu.",
    "hr": "Ova poruka traži podatke koji se nikada ne dijele u chatu. "
    "Iskoristite prijedlog ili pošaljite ponovno uz potvrdu.",
    "sl": "To sporočilo zahteva podatke, ki se jih v klepetu nikoli ne deli. "
    "Uporabite predlog ali pošljite znova s potrditvijo.",
}


class Coaching:
    """Coaching for one server process; state that others need lives in Redis."""

    def __init__(
        self,
        redis: Redis,
        rules: RulesRuntime,
        publish_to_agent: Publish,
        *,
        hold_after_s: float = 60.0,
        cue_cooldown_s: float = 300.0,
        upset_window_s: float = 300.0,
        observe_draft: Callable[[float], None] | None = None,
        batch: Batcher | None = None,
    ) -> None:
        self.redis = redis
        self.rules = rules
        self.publish_to_agent = publish_to_agent
        self.hold_after_s = hold_after_s
        self.cue_cooldown_s = cue_cooldown_s
        self.upset_window_s = upset_window_s
        self._task: asyncio.Task[None] | None = None
        self.observe_draft = observe_draft
        self._save_unlock = redis.register_script(SAVE_UNLOCK)
        #: Shared with the relay's store in the server, so one pipeline carries both.
        self.batch = batch or Batcher(redis)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick_loop(), name="coach-tick")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def coach(self) -> Coach | None:
        return self.rules.coach

    # ------------------------------------------------------------ drafts

    def check_draft(self, drafts: Drafts, draft_id: int, text: str, lang: str) -> list[Flag] | None:
        """Flags of a draft, or None when a newer draft was already answered."""
        if draft_id <= drafts.last_id:
            return None
        drafts.last_id = draft_id
        coach = self.coach
        if coach is None:
            return []
        started = time.perf_counter()
        flags = coach.check(text, lang, "agent")
        if self.observe_draft is not None:
            self.observe_draft(time.perf_counter() - started)
        drafts.shown.extend(flags)
        del drafts.shown[:-MAX_SHOWN_FLAGS]
        return flags

    def take_checked_draft(self, drafts: Drafts, draft_id: int, seconds: float, flags: str) -> bool:
        """Keep the flags (JSON) the draft checker found; False when a newer draft was
        already answered."""
        if draft_id <= drafts.last_id:
            return False
        drafts.last_id = draft_id
        if self.observe_draft is not None:
            self.observe_draft(seconds)
        if flags != "[]":
            drafts.shown_json.append(flags)
            del drafts.shown_json[:-MAX_SHOWN_FLAGS]
        return True

    # ------------------------------------------------------------ agent messages

    def check_sent(self, text: str, lang: str, override: bool) -> SentCheck:
        """Mask card numbers and check; refuse a sensitive data request unless overridden."""
        masked_text, masked = mask_cards(text)
        coach = self.coach
        if coach is not None:
            lang = coach.language_written(masked_text, lang)
        flags = coach.check(masked_text, lang, "agent") if coach is not None else []
        sensitive = [f for f in flags if f.category == "sensitive_data_request"]
        if sensitive and not override:
            raise CoachingError(_refusal(_lang(lang), masked_text), sensitive)
        return SentCheck(masked_text, masked, flags)

    async def record_sent(
        self,
        conv: str,
        state: dict[str, str],
        agent: dict[str, str],
        msg_id: str,
        seq: str,
        check: SentCheck,
        drafts: Drafts | None,
        override: bool,
    ) -> tuple[str, list[dict[str, Any]], list[Nudge]]:
        """Store the flags of a sent agent message; returns outcome, records and nudges."""
        ts = _now_ms()
        shown = drafts.seen() if drafts is not None else []
        sent_lower = check.text.lower()
        applied = [
            f
            for f in shown
            if any(s and s.lower() in sent_lower for s in f.suggestions)
            and not any(g.rule == f.rule and g.text == f.text for g in check.flags)
        ]
        shown_rules = {f.rule for f in shown}
        agent_id = agent.get("id", "")
        records: list[dict[str, Any]] = []
        for f in _unique(applied):
            records.append(_record(f, conv, msg_id, seq, ts, agent_id, "applied", override=False))
        for f in check.flags:
            outcome = "ignored" if f.rule in shown_rules else "not_seen"
            records.append(_record(f, conv, msg_id, seq, ts, agent_id, outcome, override=override))
        if drafts is not None:
            drafts.shown.clear()
            drafts.shown_json.clear()
            drafts.last_id = max(drafts.last_id, 0)
        outcome = message_outcome(records)
        day = day_of(ts)
        pipe = self.redis.pipeline(transaction=False)
        sk = score_key(agent_id, day)
        pipe.hincrby(sk, "messages", 1)
        # Every flag raised counts, applied or not, as the review's lists count them.
        for rec in records:
            pipe.hset(conv_key(conv, "flags"), rec["id"], json.dumps(rec, ensure_ascii=False))
            pipe.hincrby(RULE_FIRES, rec["rule"], 1)
            pipe.hincrby(rule_fires_key(day), rec["rule"], 1)
            pipe.hincrby(sk, "flags:" + rec["category"], 1)
            pipe.hincrby(sk, "outcome:" + scored_outcome(rec), 1)
        if records:
            pipe.zadd(FLAGGED, {conv: ts})
        if override:
            pipe.rpush(
                conv_key(conv, "coachlog"),
                json.dumps(
                    {
                        "kind": "override",
                        "ts": ts,
                        "seq": seq,
                        "ref": msg_id,
                        "agent": agent_id,
                        "rules": [f.rule for f in check.flags],
                    },
                    ensure_ascii=False,
                ),
            )
        first_response = state.get("first_response_ms")
        if not first_response:
            since = response_clock_start(state, ts)
            pipe.hsetnx(conv_key(conv, "state"), "first_response_ms", str(ts - since))
            pipe.hincrby(sk, "first_response_ms", max(0, ts - since))
            pipe.hincrby(sk, "first_responses", 1)
        pipe.zrem(WAIT_KEY, conv)
        await pipe.execute()

        nudges: list[Nudge] = []
        coach = self.coach
        if coach is not None:
            values = _slots(state, agent)
            async with self._conversation(conv, state) as chat:
                if chat is not None:
                    nudges = chat.agent_message(check.text, ts / 1000, values)
            await self._log(conv, [{"kind": "nudge", "ts": ts, **n.to_dict()} for n in nudges])
        return outcome, records, nudges

    # ------------------------------------------------------------ customer messages

    async def customer_message(
        self, conv: str, state: dict[str, str], seq: str, text: str
    ) -> list[dict[str, Any]]:
        """Cues of a customer message; ``script`` frames go to the assigned agent."""
        ts = _now_ms()
        agent_id = state.get("agent") or ""
        # The hold timer and the agent's name in one round trip.
        _, name = await asyncio.gather(
            self.batch.command("ZADD", WAIT_KEY, "NX", ts + int(self.hold_after_s * 1000), conv),
            self._agent_name(agent_id),
        )
        if self.coach is None:
            return []
        agent = {"id": agent_id, "name": name or agent_id}
        values = _slots(state, agent)
        async with self._conversation(conv, state) as chat:
            if chat is None:
                return []
            review = chat.customer_message(text, ts / 1000, values, agent=agent_id)
        frames = []
        log_records: list[dict[str, Any]] = []
        for cue in review.cues:
            log_records.append({"kind": "cue", "ts": ts, "seq": seq, **cue.model_dump()})
        for s in review.scripts:
            frames.append(_script_frame(conv, seq, text, s))
            log_records.append(_script_record(ts, frames[-1], agent_id))
        await self._log(conv, log_records)
        if agent["id"]:
            for frame in frames:
                await self.publish_to_agent(agent["id"], frame)
        elif frames:
            await self._hold_scripts(conv, frames)
        return frames

    async def scripts_shown(self, conv: str, agent_id: str) -> list[dict[str, Any]]:
        """The ``script`` frames ``agent_id`` was given in ``conv`` within the cooldown,
        the latest of each category: their cards, again, for a console opened anew."""
        latest = {
            r["category"]: r
            for r in await self._recent_scripts(conv)
            if r.get("to") in (agent_id, "") and "cue" in r
        }
        return [
            {"v": 1, "type": "script", "conversation": conv, **{k: r[k] for k in SCRIPT_FIELDS}}
            for r in latest.values()
        ]

    async def handover(
        self, conv: str, state: dict[str, str], agent: dict[str, str]
    ) -> list[dict[str, Any]]:
        """``script`` frames for an agent who has just been handed ``conv`` by another (a
        transfer, a chat back from the queue): the scripts the customer's cues brought the
        last agent within the cooldown, with the new agent's name, so they know at once
        that the customer is upset. The agent's own session sends them."""
        coach = self.coach
        if coach is None:
            return []
        ts = _now_ms()
        offered: dict[str, set[str]] = {}  # seq of the customer's message -> categories
        for record in await self._recent_scripts(conv):
            if record.get("to") != agent["id"]:
                offered.setdefault(record["seq"], set()).add(record["category"])
        if not offered:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for seq in offered:
            pipe.xrange(conv_key(conv, "events"), seq, seq, count=1)
        rows = await pipe.execute()
        values = _slots(state, agent)
        frames: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        async with self._conversation(conv, state) as chat:
            if chat is None:
                return []
            for (seq, categories), found in zip(offered.items(), rows, strict=True):
                if not found:
                    continue
                text = str(decode_event(found[0][0], found[0][1]["e"]).get("text") or "")
                for s in chat.handover(text, categories, ts / 1000, values, agent=agent["id"]):
                    frames.append(_script_frame(conv, seq, text, s))
                    records.append(_script_record(ts, frames[-1], agent["id"]))
        await self._log(conv, records)
        return frames

    async def _recent_scripts(self, conv: str) -> list[dict[str, Any]]:
        """The scripts offered in ``conv`` within the cooldown, oldest first."""
        since = _now_ms() - int(self.cue_cooldown_s * 1000)
        records = await self._logged(conv, "script", LOG_TAIL)
        return [r for r in records if r.get("ts", 0) >= since]

    async def _logged(
        self, conv: str, kind: str, last: int = MAX_LOG_RECORDS
    ) -> list[dict[str, Any]]:
        """The coach log's records of ``kind`` among its ``last``, oldest first."""
        found = []
        for raw in await self.redis.lrange(conv_key(conv, "coachlog"), -last, -1):
            if f'"{kind}"' not in raw:  # most records are of another kind: skip reading them
                continue
            record = json.loads(raw)
            if record.get("kind") == kind:
                found.append(record)
        return found

    async def _hold_scripts(self, conv: str, frames: list[dict[str, Any]]) -> None:
        """Scripts for the agent who will get ``conv``; :meth:`give_waiting_scripts` sends them."""
        key = conv_key(conv, "scripts")
        await self.redis.rpush(key, *(json.dumps(f, ensure_ascii=False) for f in frames))
        await self.redis.ltrim(key, -MAX_WAITING_SCRIPTS, -1)
        await self.redis.zadd(SCRIPTS_WAITING, {conv: _now_ms()}, nx=True)

    async def give_waiting_scripts(self) -> int:
        """Send the scripts held for chats that now have an agent; how many were sent."""
        sent = 0
        convs = cast(
            list[str],
            await self.redis.zrange(SCRIPTS_WAITING, 0, MAX_WAITING_CHATS_SCANNED - 1),
        )
        for conv in convs:
            state = cast(dict[str, str], await self.redis.hgetall(conv_key(conv, "state")))
            agent_id = state.get("agent") or ""
            closed = not state or state.get("status") == "closed"
            if not closed and not agent_id:
                continue  # still waiting for an agent
            # Off the list first: scripts held after this are listed again, none is lost.
            await self.redis.zrem(SCRIPTS_WAITING, conv)
            pipe = self.redis.pipeline(transaction=True)  # one key: taken by one process only
            pipe.lrange(conv_key(conv, "scripts"), 0, -1)
            pipe.delete(conv_key(conv, "scripts"))
            held, _ = await pipe.execute()
            if closed or not agent_id:
                continue  # nobody to give them to any more
            for raw in held:
                await self.publish_to_agent(agent_id, json.loads(raw))
                sent += 1
        return sent

    async def abandoned(self, conv: str) -> None:
        """The server closed ``conv`` because its visitor was gone: nobody waits any more.
        The agent did not close it, so no nudge about how they closed it, and the time
        the chat stood empty is not counted as their handling time."""
        await self.redis.zrem(WAIT_KEY, conv)

    async def closed(self, conv: str, state: dict[str, str]) -> list[Nudge]:
        ts = _now_ms()
        await self.redis.zrem(WAIT_KEY, conv)
        nudges: list[Nudge] = []
        agent = await self._agent_of(state)
        async with self._conversation(conv, state) as chat:
            if chat is not None:
                nudges = chat.close(ts / 1000, _slots(state, agent))
        await self._log(conv, [{"kind": "nudge", "ts": ts, **n.to_dict()} for n in nudges])
        created = int(state.get("created", ts) or ts)
        if agent["id"]:
            sk = score_key(agent["id"], day_of(ts))
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(sk, "handling_ms", max(0, ts - created))
            pipe.hincrby(sk, "handled", 1)
            await pipe.execute()
            for n in nudges:
                await self.publish_to_agent(agent["id"], nudge_frame(conv, n))
        return nudges

    async def whisper(self, conv: str, agent_id: str, sender: dict[str, str], text: str) -> None:
        ts = _now_ms()
        frame = {
            "v": 1,
            "type": "whisper",
            "conversation": conv,
            "from": sender,
            "text": text,
            "ts": ts,
        }
        record = {"kind": "whisper", "ts": ts, "from": sender, "to": agent_id, "text": text}
        await self._log(conv, [record])
        await self.publish_to_agent(agent_id, frame)

    async def whispers(self, conv: str, agent_id: str | None = None) -> list[dict[str, Any]]:
        """The whispers in a conversation, oldest first: ``ts``, ``from``, ``text``; with
        ``agent_id``, only those whispered to that agent (the chat's next agent does not
        read what a supervisor told the last one)."""
        return [
            {k: record[k] for k in ("ts", "from", "text")}
            for record in await self._logged(conv, "whisper")
            if agent_id is None or record.get("to") == agent_id
        ]

    async def outcomes(self, conv: str, agent_id: str | None = None) -> dict[str, str]:
        """What the agent did with the flags of each flagged message: message id -> outcome;
        with ``agent_id``, only for the messages that agent sent."""
        by_message: dict[str, list[dict[str, Any]]] = {}
        for raw in await self.redis.hvals(conv_key(conv, "flags")):
            record = json.loads(raw)
            if agent_id is None or record.get("agent") == agent_id:
                by_message.setdefault(record["ref"], []).append(record)
        return {ref: message_outcome(records) for ref, records in by_message.items()}

    # ------------------------------------------------------------ the clock

    async def _tick_loop(self) -> None:
        while True:
            try:
                await self.tick_once()
            except RedisError:
                log.warning("coach tick: redis unavailable")
            except Exception:  # noqa: BLE001 - the ticker must survive anything
                log.exception("coach tick failed")
            await asyncio.sleep(TICK_INTERVAL_S)

    async def tick_once(self, now_ms: int | None = None) -> list[tuple[str, Nudge]]:
        now = now_ms if now_ms is not None else _now_ms()
        await self.give_waiting_scripts()
        due = cast(
            list[str], await self.redis.zrangebyscore(WAIT_KEY, "-inf", now, start=0, num=100)
        )
        sent: list[tuple[str, Nudge]] = []
        for conv in due:
            state = cast(dict[str, str], await self.redis.hgetall(conv_key(conv, "state")))
            if not state or state.get("status") == "closed":
                await self.redis.zrem(WAIT_KEY, conv)
                continue
            agent = await self._agent_of(state)
            async with self._conversation(conv, state) as chat:
                if chat is None:
                    continue
                nudges = chat.tick(now / 1000, _slots(state, agent))
            # Look again after the next full hold period.
            await self.redis.zadd(WAIT_KEY, {conv: now + int(self.hold_after_s * 1000)}, xx=True)
            if not nudges:
                continue
            await self._log(conv, [{"kind": "nudge", "ts": now, **n.to_dict()} for n in nudges])
            for n in nudges:
                sent.append((conv, n))
                if agent["id"]:
                    await self.publish_to_agent(agent["id"], nudge_frame(conv, n))
        return sent

    # ------------------------------------------------------------ state

    def _agent_name(self, agent_id: str) -> asyncio.Future[Any]:
        """The agent's display name (None without an agent), as a batched read."""
        if agent_id:
            return self.batch.command("HGET", f"{G}agent:{agent_id}", "name")
        none: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        none.set_result(None)
        return none

    async def _agent_of(self, state: dict[str, str]) -> dict[str, str]:
        agent_id = state.get("agent") or ""
        return {"id": agent_id, "name": await self._agent_name(agent_id) or agent_id}

    @contextlib.asynccontextmanager
    async def _conversation(self, conv: str, state: dict[str, str]) -> Any:
        """The conversation coach of ``conv``, locked across processes and saved after."""
        coach = self.coach
        if coach is None:
            yield None
            return
        lock = conv_key(conv, "coach-lock")
        key = conv_key(conv, "coach")
        token = secrets.token_hex(8)
        for _ in range(LOCK_RETRIES):
            # Take the lock and read the state in one round trip; the state read is
            # only used when the lock was ours.
            locked, raw = await asyncio.gather(
                self.batch.command("SET", lock, token, "NX", "PX", LOCK_TTL_MS),
                self.batch.command("GET", key),
            )
            if locked:
                break
            await asyncio.sleep(LOCK_RETRY_S)
        else:
            log.warning("coach state of %s stayed locked; skipping", conv)
            yield None
            return
        saved = ""
        try:
            chat = self._restore(raw, state)
            yield chat
            saved = json.dumps(chat.to_dict())
        finally:
            # Saved only while the lock is still ours, and released in the same round trip.
            await self.batch.script(self._save_unlock, [key, lock], [token, saved])

    def _restore(self, raw: str | None, state: dict[str, str]) -> ConversationCoach:
        coach = self.coach
        assert coach is not None
        hold, upset, cooldown = self.hold_after_s, self.upset_window_s, self.cue_cooldown_s
        try:
            if raw:
                return ConversationCoach.from_dict(
                    coach,
                    json.loads(raw),
                    hold_after=hold,
                    upset_window=upset,
                    cue_cooldown=cooldown,
                )
            started = int(state.get("created", _now_ms())) / 1000
        except (ValueError, TypeError):
            started = _now_ms() / 1000
        return ConversationCoach(
            coach,
            state.get("lang", "en"),
            started,
            hold_after=hold,
            upset_window=upset,
            cue_cooldown=cooldown,
        )

    async def _log(self, conv: str, records: Iterable[dict[str, Any]]) -> None:
        encoded = [json.dumps(r, ensure_ascii=False) for r in records]
        if not encoded:
            return
        key = conv_key(conv, "coachlog")
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(key, *encoded)
        pipe.ltrim(key, -MAX_LOG_RECORDS, -1)
        await pipe.execute()


def cue_excerpt(text: str, start: int, end: int, limit: int = CUE_EXCERPT) -> str:
    """The customer's message around a cue: the whole of it when short, else at most
    ``limit`` characters centred on the cue's words (``start:end``), cut between words
    (``…о сам кафу`` would read as another word), an ellipsis where it was cut."""
    if len(text) <= limit:
        return text
    width = limit - 2  # room for an ellipsis at each cut end
    begin = max(0, min(len(text) - width, (start + end - width) // 2))
    stop = begin + width
    # A cut inside a word moves in to the space nearest it, short of the cue's words; a
    # word too long for the quote (a link) is cut where it falls.
    if begin > 0 and not text[begin - 1].isspace():
        space = next((i for i in range(begin, min(start, stop)) if text[i].isspace()), None)
        begin = begin if space is None else space + 1
    if stop < len(text) and not text[stop].isspace():
        low = max(begin, end)
        space = next((i for i in range(stop - 1, low - 1, -1) if text[i].isspace()), None)
        stop = stop if space is None else space
    part = text[begin:stop].strip()
    return ("…" if begin > 0 else "") + part + ("…" if stop < len(text) else "")


def nudge_frame(conv: str, n: Nudge) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "v": 1,
        "type": "nudge",
        "conversation": conv,
        "category": n.category,
        "rule": n.rule,
        "severity": n.severity,
        "message": n.message,
        "suggestions": n.suggestions,
    }
    if n.waited is not None:
        frame["waited_s"] = int(n.waited)
    return frame


def coach_frame_json(conv: str, draft_id: int, flags: str) -> str:
    """A ``coach`` frame around flags that are JSON already (from the draft checker)."""
    return (
        f'{{"v":1,"type":"coach","conversation":{json.dumps(conv, ensure_ascii=False)},'
        f'"draft_id":{draft_id},"flags":{flags}}}'
    )


def coach_frame(conv: str, draft_id: int, flags: list[Flag]) -> dict[str, Any]:
    return {
        "v": 1,
        "type": "coach",
        "conversation": conv,
        "draft_id": draft_id,
        "flags": [f.model_dump() for f in flags],
    }


def _script_frame(conv: str, seq: str, text: str, s: Flag) -> dict[str, Any]:
    """The ``script`` frame of a cue ``s`` in the customer's message ``text`` at ``seq``."""
    return {
        "v": 1,
        "type": "script",
        "conversation": conv,
        "category": s.category,
        "cue": {
            "seq": seq,
            "start": s.start,
            "end": s.end,
            "text": s.text,
            "said": cue_excerpt(text, s.start, s.end),
        },
        "message": s.message,
        "scripts": s.suggestions,
    }


def _script_record(ts: int, frame: dict[str, Any], agent_id: str) -> dict[str, Any]:
    """A script offered, as the coach log keeps it: its frame's words, and to whom
    (``""`` while nobody had the chat and it waited for the next agent)."""
    return {
        "kind": "script",
        "ts": ts,
        "seq": frame["cue"]["seq"],
        **{k: frame[k] for k in SCRIPT_FIELDS},
        "to": agent_id,
    }


def message_outcome(records: list[dict[str, Any]]) -> str:
    """One word for what became of a sent message's flags: ``applied`` when the agent took
    every suggestion, ``ignored`` when a flag they saw was sent anyway, else ``not_seen``;
    ``clean`` for a message without flags."""
    if not records:
        return "clean"
    kept = {r["outcome"] for r in records} - {"applied"}
    if not kept:
        return "applied"
    return "ignored" if "ignored" in kept else "not_seen"


def _record(
    f: Flag,
    conv: str,
    msg_id: str,
    seq: str,
    ts: int,
    agent_id: str,
    outcome: str,
    *,
    override: bool,
) -> dict[str, Any]:
    """A flag as stored: with the message it was raised on and the account that sent it."""
    return {
        "id": "f_" + secrets.token_hex(6),
        "conversation": conv,
        "ref": msg_id,
        "seq": seq,
        "ts": ts,
        "agent": agent_id,
        **f.model_dump(),
        "outcome": outcome,
        "override": override,
        "review": None,
    }


def _unique(flags: list[Flag]) -> list[Flag]:
    seen: set[tuple[str, str]] = set()
    out = []
    for f in flags:
        if (f.rule, f.text) not in seen:
            seen.add((f.rule, f.text))
            out.append(f)
    return out


def _slots(state: dict[str, str], agent: dict[str, str]) -> dict[str, str | None]:
    name = state.get("visitor_name") or ""
    return {
        "customer_name": name if name and name.lower() not in ("visitor", "posetilac") else None,
        "agent_name": agent.get("name") or None,
        "topic": state.get("topic") or None,
    }


def _refusal(lang: str, text: str) -> str:
    """Why a message was refused, in the language and, for Serbian, the script of the
    message, as the coach writes its flags' messages."""
    message = _REFUSALS.get(lang, _REFUSALS["en"])
    if lang == "sr" and script.is_cyrillic(text):
        message = script.latin_to_cyrillic(message)
    return message


def _lang(lang: str) -> str:
    return lang.split("-", 1)[0].lower()


def _now_ms() -> int:
    return int(time.time() * 1000)
