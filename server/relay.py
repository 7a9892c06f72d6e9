"""The chat relay: one :class:`Session` per WebSocket, one :class:`Relay` per process.

A session authenticates with ``hello``, joins its conversations (subscribe
first, then read the stream, then release what arrived meanwhile, so nothing
is missed or doubled) and turns client frames into Redis writes. Every event
a client sees comes from the conversation's stream, live through pub/sub or
replayed from the stream; ``Session.convs`` holds the last ``seq`` sent per
conversation and drops anything not newer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from server import protocol as p
from server.accounts import get_account, list_accounts, session_account
from server.checker import MAX_BATCH, CheckerUnavailable, DraftChecker
from server.coaching import (
    Coaching,
    CoachingError,
    Drafts,
    SentCheck,
    coach_frame,
    coach_frame_json,
    day_of,
    nudge_frame,
    score_key,
)
from server.config import Settings, Site
from server.errors import CloseCode, ErrorCode, ProtocolError
from server.hub import Hub
from server.masking import mask_cards
from server.metrics import Metrics
from server.privacy import deleted_key
from server.ratelimit import BucketsByKey, TokenBucket
from server.routing import Names, Router
from server.store import (
    Store,
    Waiting,
    live_channel,
    now_ms,
    user_channel,
    visitor_name,
    visitor_of,
)
from server.tokens import verify

log = logging.getLogger("tactline.relay")

# Timeouts
QUEUE_DEBOUNCE_S = 0.05
QUEUE_MAX_PAUSE_S = 0.25  # longest wait between snapshots while the queue keeps changing
QUEUE_SHARE = 0.2  # of a process's time for queue snapshots while the queue keeps changing
AGENT_SNAPSHOT_INTERVAL_S = 1.0
CLOSE_TIMEOUT_S = 2.0
RESYNC_BACKOFF_S = 0.1
RESYNC_ATTEMPTS = 6

SEQ_PREFIX = '{"seq":"'
#: Notices kept while hello is answered (more would mean it is stuck).
MAX_HELD_NOTICES = 100
#: How long after a chat closed its agent still gets the coach's nudges for it.
AFTER_CLOSE_S = 30.0
#: How long the draft desk checks drafts before it lets other work run.
DESK_SLICE_S = 0.05


def origin_allowed(site: Site, origin: str | None, host: str | None) -> bool:
    """Is a browser page at ``origin`` allowed to use ``site``? No Origin (not a browser): yes.

    Patterns: an exact origin, ``scheme://host:*`` for any port, ``self`` for the
    server's own origin (the request's Host), ``*`` for any.
    """
    if not origin:
        return True
    origin = origin.rstrip("/").lower()
    for pattern in site.origins:
        pat = pattern.rstrip("/").lower()
        if pat == "*" or pat == origin:
            return True
        if (
            pat == "self"
            and host
            and origin in (f"http://{host.lower()}", f"https://{host.lower()}")
        ):
            return True
        if pat.endswith(":*"):
            base = pat[:-2]
            if origin == base or (
                origin.startswith(base + ":") and origin[len(base) + 1 :].isdigit()
            ):
                return True
    return False


#: What is in a conversation's events for its agents only: the note for the next agent and
#: who passed it on, and that a message was sent despite the coach.
AGENTS_ONLY = ("note", "from_agent", "override")
#: Who closes the chat of a visitor who is gone.
GONE = p.Party(role="system", id="system", name="Tactline")
#: How often, at most, a process looks for chats whose visitor is gone.
GONE_CHECK_S = 30.0


def _strip_for_visitor(payload: str) -> str:
    """Visitors see who is with them now, not what is meant for agents."""
    event = json.loads(payload)
    for key in AGENTS_ONLY:
        event.pop(key, None)
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def _event_payload(event: dict[str, Any]) -> str:
    body = dict(event)
    seq = body.pop("seq")
    return json.dumps({"seq": seq, **body}, separators=(",", ":"), ensure_ascii=False)


def _strip_event(event: dict[str, Any], role: str) -> dict[str, Any]:
    if role == "visitor" and any(key in event for key in AGENTS_ONLY):
        event = {k: v for k, v in event.items() if k not in AGENTS_ONLY}
    return event


async def cancel_and_wait(tasks: list[asyncio.Task[None]], rounds: int = 5) -> None:
    """Cancel background tasks and wait for them; cancel again if one swallowed it."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(rounds):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    if pending:
        log.warning("background tasks did not stop: %s", [t.get_name() for t in pending])


class Relay:
    """Process-wide state: Redis, pub/sub hub, routing, metrics and the open sessions."""

    def __init__(
        self,
        settings: Settings,
        secret: str,
        redis: Redis,
        metrics: Metrics,
        pubsub: Redis | None = None,
        pubsub_fallbacks: Callable[[], Sequence[Redis]] = tuple,
    ) -> None:
        self.settings = settings
        self.secret = secret
        self.redis = redis
        self.metrics = metrics
        self.store = Store(redis)
        self.names = Names(redis)
        self.router = Router(self.store, self.names, settings.avg_handle_s)
        # A Redis Cluster client has no pub/sub of its own: ``pubsub`` is one node, and
        # ``pubsub_fallbacks`` the others, for when it is gone.
        self.hub = Hub(pubsub or redis, self.queue_changed, pubsub_fallbacks)
        self.sites = dict(settings.sites)
        self.ip_buckets = BucketsByKey(settings.rate_ip_per_s, settings.rate_ip_burst)
        #: Per person, not per connection: reconnecting does not refill the budget.
        self.user_buckets = BucketsByKey(settings.rate_conn_per_s, settings.rate_conn_burst)
        self.ip_connections: dict[str, int] = {}
        self.sessions: set[Session] = set()
        #: Live coaching (server/coaching.py); None runs the chat without it.
        self.coaching: Coaching | None = None
        self.drafts = DraftDesk()
        self._queue_dirty = asyncio.Event()
        self._sweep_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.hub.start()
        self._tasks = [
            asyncio.create_task(self._queue_loop(), name="queue-updates"),
            asyncio.create_task(self._sweep_loop(), name="sweeper"),
            asyncio.create_task(self.drafts.run(), name="drafts"),
        ]

    async def stop(self) -> None:
        for session in list(self.sessions):
            await session.close(CloseCode.GOING_AWAY)
        await cancel_and_wait(self._tasks)
        await self.hub.stop()

    def queue_changed(self) -> None:
        self._queue_dirty.set()

    def kick_sweep(self) -> None:
        self._sweep_now.set()

    async def _queue_loop(self) -> None:
        pause = QUEUE_DEBOUNCE_S
        while True:
            await self._queue_dirty.wait()
            await asyncio.sleep(pause)
            self._queue_dirty.clear()
            started = time.perf_counter()
            try:
                snapshot, updates = await self.router.snapshot()
                online = await self.store.online_by_lang(p.LANGS)
            except RedisError as exc:
                log.warning("queue snapshot failed: %s", exc)
                await asyncio.sleep(0.5)
                self._queue_dirty.set()
                continue
            self.metrics.queue_length = len(snapshot.queue)
            encoded = p.encode(snapshot)
            for session in list(self.sessions):
                session.on_queue(encoded, updates, online)
            # A snapshot costs more with every agent and queued chat; while changes keep
            # coming (hundreds of agents going online), take at most a share of the time.
            spent = time.perf_counter() - started
            pause = min(QUEUE_MAX_PAUSE_S, max(QUEUE_DEBOUNCE_S, spent / QUEUE_SHARE))

    async def _sweep_loop(self) -> None:
        s = self.settings
        last_presence = 0.0
        last_repair = time.monotonic()
        last_gone = time.monotonic()
        gone_every = min(GONE_CHECK_S, max(s.visitor_gone_close_s / 4, s.sweep_interval_s))
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.sweep_interval_s):
                    await self._sweep_now.wait()
            self._sweep_now.clear()
            try:
                now = time.monotonic()
                if now - last_presence > s.presence_ttl_s / 3:
                    last_presence = now
                    members = [x.presence_member for x in self.sessions if x.presence_member]
                    await self.store.set_presence(members, int(s.presence_ttl_s * 1000))
                    await self.store.visitors_seen(
                        x.open_conv for x in self.sessions if x.role == "visitor" and x.open_conv
                    )
                expired = await self.store.sweep(int(s.grace_period_s * 1000))
                if expired:
                    log.info("grace period over for %s", sorted({a for a, _ in expired}))
                    await self.router.requeue(expired)
                    await self.router.notify_queue_changed()
                else:
                    await self.router.route()
                if s.visitor_gone_close_s and now - last_gone > gone_every:
                    last_gone = now
                    if await self.store.take_turn("gone", int(gone_every * 1000)):
                        await self._close_for_gone_visitors()
                if now - last_repair > s.repair_interval_s:
                    last_repair = now
                    if await self.store.take_turn("repair", int(s.repair_interval_s * 1000)):
                        await self.router.repair(int(s.repair_after_s * 1000))
            except asyncio.CancelledError:
                raise
            except RedisError as exc:
                log.warning("sweep failed: %s", exc)
            except Exception:  # noqa: BLE001 - the sweeper must survive one bad round
                log.exception("sweep failed")


    async def _close_for_gone_visitors(self) -> None:
        """Close the open chats whose visitor has had no connection for
        ``visitor_gone_close_s``: they would hold an agent's seat, and come back to every
        agent who goes online, for nobody. Messages left for an agent stay: their visitor
        is answered by email."""
        before = now_ms() - int(self.settings.visitor_gone_close_s * 1000)
        for conv in await self.store.visitors_gone(before):
            st = await self.store.state(conv)
            await self.store.forget_visitor_seen(conv)
            if not st or st.get("status") == "closed" or st.get("left_message") == "1":
                continue
            event = p.ClosedEvent(conversation=conv, ts=now_ms(), by=GONE, reason="timeout")
            body = p.dump(event)
            body.pop("seq")
            outcome, _ = await self.store.append(
                conv, body, actor="any", state=[("status", "closed"), ("closed_at", str(now_ms()))]
            )
            if outcome != "ok":
                continue
            log.info("closed %s: its visitor has been gone since before %d", conv, before)
            await self.store.release(conv)
            await self.store.clear_open(st.get("visitor", ""), conv)
            if self.coaching is not None:
                await self.coaching.abandoned(conv)
        await self.router.route()
        await self.router.notify_queue_changed()


def _assigns_new(payload: str, welcomed: dict[str, str | None]) -> bool:
    """Whether a notice assigns a new chat that ``welcomed`` already holds."""
    with contextlib.suppress(ValueError):
        data = json.loads(payload)
        return (
            data.get("kind") == "assignment"
            and data.get("reason", "new") == "new"
            and data.get("conversation") in welcomed
        )
    return False


class DraftDesk:
    """Drafts waiting for the coach: the newest per connection and conversation.

    Checking a draft is the costliest thing a frame asks for, and an answer to
    an old draft is worth nothing once a newer one came. The read loop only
    leaves the draft here; one task per process hands the waiting drafts, in
    arrival order, to the draft checker (server/checker.py: a process of its
    own at a lower priority), a batch at a time. While a batch is out, newer
    drafts take the place of older ones still waiting, so a fast typist never
    builds a backlog.

    Without a checker that runs the process's rules, the drafts are checked
    here, letting other work run after each ``DESK_SLICE_S`` of checking, so
    chat messages wait behind at most one slice of drafts.
    """

    def __init__(self) -> None:
        self._waiting: dict[tuple[Session, str], tuple[int, str, str]] = {}
        self._ready = asyncio.Event()
        self.checker: DraftChecker | None = None

    def put(self, session: Session, conv: str, draft_id: int, text: str, lang: str) -> None:
        if self.checker is not None:
            self.checker.start()  # with the first draft: a server nobody types to needs none
        key = (session, conv)
        waiting = self._waiting.get(key)
        if waiting is not None and waiting[0] >= draft_id:
            return
        # A newer draft takes the place of the waiting one, and keeps its turn.
        self._waiting[key] = (draft_id, text, lang)
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._waiting:
                checker = self.checker
                if checker is not None:
                    checker.follow()
                    if checker.usable():
                        with contextlib.suppress(CheckerUnavailable):
                            await self._check_apart(checker)
                            continue
                self._check_here()
                await asyncio.sleep(0)  # let the chat through, then go on

    async def _check_apart(self, checker: DraftChecker) -> None:
        batch: list[tuple[tuple[Session, str], tuple[int, str, str]]] = []
        while self._waiting and len(batch) < MAX_BATCH:
            key = next(iter(self._waiting))
            batch.append((key, self._waiting.pop(key)))
        try:
            results = await checker.check([(lang, text) for _, (_, text, lang) in batch])
        except CheckerUnavailable:
            for key, draft in reversed(batch):  # back at the front, unless superseded
                if key not in self._waiting:
                    self._waiting = {key: draft, **self._waiting}
            raise
        for ((session, conv), (draft_id, _, _)), (seconds, flags) in zip(
            batch, results, strict=True
        ):
            session.answer_draft(conv, draft_id, seconds, flags)

    def _check_here(self) -> None:
        until = time.perf_counter() + DESK_SLICE_S
        while self._waiting and time.perf_counter() < until:
            key = next(iter(self._waiting))
            draft_id, text, lang = self._waiting.pop(key)
            session, conv = key
            try:
                session.coach_draft(conv, draft_id, text, lang)
            except Exception:  # noqa: BLE001 - one bad draft must not stop the desk
                log.exception("draft check failed")


class Session:
    """One WebSocket connection of a visitor, agent or supervisor."""

    def __init__(self, relay: Relay, ws: WebSocket, endpoint: str, ip: str) -> None:
        self.relay = relay
        self.settings = relay.settings
        self.ws = ws
        self.endpoint = endpoint
        self.frames = p.VISITOR_FRAMES if endpoint == "visitor" else p.AGENT_FRAMES
        self.ip = ip
        self.conn_id = secrets.token_hex(6)
        self.out: asyncio.Queue[str | None] = asyncio.Queue(self.settings.outbound_queue)
        self.bucket = TokenBucket(
            self.settings.rate_conn_per_s, self.settings.rate_conn_burst, time.monotonic()
        )
        self.strikes = 0
        self.role: str | None = None
        self.uid = ""
        self.name = ""
        self.given_name = ""  # a visitor's own, as the site gave it; "" for none
        self.email = ""  # a visitor's, as the site gave it
        self.lang = "en"
        self.site = ""
        self.teams: list[str] = []
        self.languages: list[str] = []
        self.presence_member = ""
        self.convs: dict[str, str | None] = {}  # joined conversation -> last seq sent
        self.syncing: dict[str, list[str]] = {}
        self.channels: set[str] = set()
        self.open_conv: str | None = None  # visitors: their open conversation
        self._last_queue: dict[str, tuple[int, int | None, int]] = {}
        self._told_online: int | None = None  # visitors: agents_online as last told
        self._last_snapshot: str | None = None
        self._last_snapshot_at = 0.0
        self._pending_snapshot: str | None = None
        self._snapshot_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.drafts: dict[str, Drafts] = {}  # agents: conversation -> drafts coached
        self.conv_langs: dict[str, str] = {}
        self.watching: set[str] = set()  # supervisors: conversations watched
        #: Conversations closed lately, and when: the coach's verdict on a closed
        #: chat (missing_thanks) comes after the close and is still delivered.
        self.closed_lately: dict[str, float] = {}
        self._last_closed: str | None = None
        self._counted = ""  # role counted in the connections gauge
        self._run_task: asyncio.Task[Any] | None = None  # the task reading the socket
        self._hung_up = False  # closed from another task: stop reading at once
        #: Notices that came while ``hello`` was answered: handed on after ``welcome``.
        self._held: list[tuple[str, str]] | None = []
        self._last_frame = 0.0  # loop time of the last frame read
        self._idle_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ plumbing

    @property
    def party(self) -> p.Party:
        return p.Party(role=self.role or "visitor", id=self.uid, name=self.name)

    def send(self, frame: str | dict[str, Any] | p.ServerFrame) -> None:
        if self._closing:
            return
        text = frame if isinstance(frame, str) else p.encode(frame)
        try:
            self.out.put_nowait(text)
        except asyncio.QueueFull:
            log.info("closing slow %s connection %s (outbound queue full)", self.role, self.conn_id)
            self.spawn(self.close(CloseCode.TRY_AGAIN_LATER))

    def send_error(self, err: ProtocolError) -> None:
        self.relay.metrics.errors[err.code.value] += 1
        self.send(p.error_frame(err))

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session task failed", exc_info=task.exception())

    async def close(self, code: int) -> None:
        if self._closing:
            return
        self._closing = True
        self.relay.metrics.closes[code] += 1
        with contextlib.suppress(asyncio.QueueFull):
            self.out.put_nowait(None)
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(code), CLOSE_TIMEOUT_S)
        task = self._run_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            # Closed from outside the read loop (a slow client, a failed resync): the client
            # may never answer, and may not even read the close frame; end the session now.
            self._hung_up = True
            task.cancel()

    async def _writer(self) -> None:
        out = self.out
        while True:
            item = await out.get()
            while item is not None:  # everything queued, without waking up for each
                await self.ws.send_text(item)
                if out.empty():
                    break
                item = out.get_nowait()
            if item is None:
                return

    async def run(self) -> None:
        self.relay.sessions.add(self)
        self._run_task = asyncio.current_task()
        writer = asyncio.create_task(self._writer())
        try:
            await self._read_loop()
        except (WebSocketDisconnect, RuntimeError):
            pass
        except asyncio.CancelledError:
            if not self._hung_up or self._run_task is None or self._run_task.uncancel() > 0:
                raise
        finally:
            self._closing = True
            writer.cancel()
            for task in list(self._tasks):
                task.cancel()
            self.relay.sessions.discard(self)
            if self._counted:
                self.relay.metrics.connections[self._counted] -= 1
            await self._cleanup()

    async def _cleanup(self) -> None:
        for channel in list(self.channels):
            with contextlib.suppress(Exception):
                await self.relay.hub.leave(channel, self)
        if self.presence_member:
            with contextlib.suppress(RedisError):
                await self.relay.store.drop_presence(self.presence_member)
            self.relay.kick_sweep()

    def _idle_check(self) -> None:
        """Close a connection silent for too long; otherwise look again when it could be.

        One timer per connection, moved only when it fires: cheaper than a
        timeout around every read.
        """
        s = self.settings
        timeout = s.idle_timeout_s if self.role else s.hello_timeout_s
        loop = asyncio.get_running_loop()
        due = self._last_frame + timeout
        if loop.time() < due:
            self._idle_timer = loop.call_at(due, self._idle_check)
            return
        self._idle_timer = None
        self.spawn(self.close(CloseCode.IDLE_TIMEOUT if self.role else CloseCode.HELLO_TIMEOUT))

    async def _read_loop(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        self._last_frame = loop.time()
        self._idle_timer = loop.call_at(self._last_frame + s.hello_timeout_s, self._idle_check)
        try:
            await self._read_frames(loop)
        finally:
            if self._idle_timer is not None:
                self._idle_timer.cancel()

    async def _read_frames(self, loop: asyncio.AbstractEventLoop) -> None:
        s = self.settings
        while True:
            msg = await self.ws.receive()
            self._last_frame = loop.time()
            if msg["type"] == "websocket.disconnect":
                return
            raw: str | bytes | None = msg.get("text")
            if raw is None:
                raw = msg.get("bytes") or b""
            size = len(raw) if isinstance(raw, bytes) else len(raw)
            if size * (4 if isinstance(raw, str) else 1) > s.max_frame_bytes and (
                isinstance(raw, bytes) or len(raw.encode()) > s.max_frame_bytes
            ):
                await self.close(CloseCode.MESSAGE_TOO_BIG)
                return
            now = self._last_frame
            if not (self.bucket.take(now) and self.relay.ip_buckets.take(self.ip, now)):
                self.strikes += 1
                self.send_error(ProtocolError(ErrorCode.RATE_LIMITED, "too many frames; slow down"))
                if self.strikes > s.rate_strikes:
                    await self.close(CloseCode.POLICY_VIOLATION)
                    return
                continue
            self.relay.metrics.frames_in_total += 1
            ref: str | None = None
            try:
                frame = p.parse_client_frame(raw, self.frames)
                ref = frame.id
                await self._dispatch(frame)
            except ProtocolError as err:
                if err.ref is None:
                    err.ref = ref
                self.send_error(err)
                if err.code in (ErrorCode.TOKEN_INVALID, ErrorCode.TOKEN_EXPIRED):
                    await self.close(CloseCode.UNAUTHORIZED)
                    return
                if err.code == ErrorCode.RATE_LIMITED and not self.role:
                    await self.close(CloseCode.POLICY_VIOLATION)
                    return
            except (RedisError, OSError, TimeoutError):
                log.exception("redis failed while handling a frame")
                self.send_error(ProtocolError(ErrorCode.INTERNAL, "try again shortly", ref))
            except Exception:  # noqa: BLE001 - log it; the client only learns it may retry
                log.exception("failed to handle a %s frame", self.role or "new")
                self.send_error(ProtocolError(ErrorCode.INTERNAL, "try again shortly", ref))
            if self._closing:
                return

    async def _dispatch(self, frame: p.ClientFrame) -> None:
        kind: str = frame.type  # type: ignore[attr-defined]
        if kind == "hello":
            if self.role:
                raise ProtocolError(ErrorCode.ALREADY_AUTHENTICATED, "already said hello")
            assert isinstance(frame, p.Hello)
            try:
                await (
                    self._hello_visitor(frame)
                    if self.endpoint == "visitor"
                    else self._hello_agent(frame)
                )
            except Exception:
                if self.role and self._held is not None:
                    # Known but not welcomed (Redis failed halfway): a new connection
                    # starts clean, where this one would miss what it was told.
                    self.spawn(self.close(CloseCode.TRY_AGAIN_LATER))
                raise
            return
        if not self.role:
            raise ProtocolError(ErrorCode.HELLO_REQUIRED, "send hello first")
        handler: Callable[[Any], Awaitable[None]] = getattr(self, "_on_" + kind)
        await handler(frame)

    # ------------------------------------------------------------ joining

    async def _begin_join(self, conv: str, cursor: str | None) -> tuple[list[dict[str, Any]], bool]:
        self.syncing[conv] = []
        channel = live_channel(conv)
        self.channels.add(channel)
        await self.relay.hub.join(channel, self)
        if cursor:
            return await self.relay.store.events_after(conv, cursor, 0), False
        return await self.relay.store.history(conv, self.settings.history_limit)

    def _end_join(self, conv: str, events: list[dict[str, Any]], cursor: str | None) -> None:
        buffered = self.syncing.pop(conv, [])
        self.convs[conv] = events[-1]["seq"] if events else cursor
        for payload in buffered:
            self.on_live(conv, payload)

    async def _join_live(self, conv: str) -> None:
        """Join and deliver everything of ``conv`` as live events (nothing sent before)."""
        if conv in self.convs:
            return
        events, _ = await self._begin_join(conv, None)
        self._end_join(conv, [], None)
        for event in events:
            self.on_live(conv, _event_payload(event))

    async def _leave(self, conv: str) -> None:
        self.convs.pop(conv, None)
        self.syncing.pop(conv, None)
        channel = live_channel(conv)
        self.channels.discard(channel)
        await self.relay.hub.leave(channel, self)

    async def _view(self, conv: str, st: dict[str, str], cursor: str | None) -> p.ConversationView:
        events, truncated = await self._begin_join(conv, cursor)
        agent = await self.relay.names.agent(st["agent"]) if st.get("agent") else None
        whispers, coached = await self._coaching_of(conv)
        return p.ConversationView(
            conversation=conv,
            status=st.get("status", "queued"),
            lang=st.get("lang", "en"),
            visitor=p.VisitorRef(**visitor_of(st), lang=st.get("lang", "en")),
            agent=agent,
            events=[_strip_event(e, self.role or "") for e in events],
            history_truncated=truncated,
            whispers=whispers,
            coached=coached,
        )

    async def _coaching_of(
        self, conv: str
    ) -> tuple[list[dict[str, Any]] | None, dict[str, str] | None]:
        """The whispers and the coach's outcomes of a conversation, for agents' eyes only:
        a supervisor's all of them, an agent's those whispered to them and those of the
        messages they sent."""
        coaching = self.relay.coaching
        if self.role == "visitor":
            return None, None
        if coaching is None:
            return [], {}
        mine = None if self.role == "supervisor" else self.uid
        return await coaching.whispers(conv, mine), await coaching.outcomes(conv, mine)

    async def _welcome(
        self, wanted: list[str], resume: dict[str, str], may_see: Callable[[dict[str, str]], bool]
    ) -> None:
        views: list[p.ConversationView] = []
        for conv in dict.fromkeys(wanted):
            st = await self.relay.store.state(conv)
            if not st or not may_see(st):
                continue
            views.append(await self._view(conv, st, resume.get(conv)))
        online = await self._agents_online()
        if self.role == "visitor":
            self._told_online = online
        settings = None
        if self.role == "agent":
            mine = await self.relay.store.agent(self.uid)
            status = mine.get("status")
            settings = p.AgentSettings(
                status=status if status in ("online", "away") else "offline",
                capacity=int(mine.get("capacity") or self.settings.default_capacity),
            )
        self.send(
            p.Welcome(
                role=self.role,
                user=p.AgentRef(id=self.uid, name=self.name),
                agents_online=online,
                conversations=views,
                settings=settings,
            )
        )
        for view in views:
            self._end_join(view.conversation, view.events, resume.get(view.conversation))
        coaching = self.relay.coaching
        if coaching is not None and self.role != "visitor":
            # A console opened anew shows the cards its chats had: their scripts again.
            for view in views:
                if view.status == "assigned" and view.agent and view.agent.id == self.uid:
                    for frame in await coaching.scripts_shown(view.conversation, self.uid):
                        self.send(frame)
        held, self._held = self._held or [], None
        for channel, payload in held:
            if _assigns_new(payload, self.convs):
                continue  # the welcome has this chat already
            self.on_notice(channel, payload)
        self._counted = self.role or "visitor"
        self.relay.metrics.connections[self._counted] += 1
        self.relay.queue_changed()

    # ------------------------------------------------------------ hello

    async def _hello_visitor(self, frame: p.Hello) -> None:
        claims = verify(self.relay.secret, frame.token, "visitor", time.time())
        self._share_budget(f"visitor:{claims.sub}")
        site = self.relay.sites.get(str(claims.data.get("site")))
        if site is None:
            raise ProtocolError(ErrorCode.TOKEN_INVALID, "token is not valid")
        if not origin_allowed(site, self.ws.headers.get("origin"), self.ws.headers.get("host")):
            raise ProtocolError(ErrorCode.TOKEN_INVALID, "token is not valid for this origin")
        if await self.relay.redis.exists(deleted_key(claims.sub)):
            raise ProtocolError(ErrorCode.TOKEN_INVALID, "token is not valid")
        self.role = "visitor"
        self.uid = claims.sub
        self.given_name = str(claims.data.get("name") or "")
        self.name = visitor_name(claims.sub, self.given_name)
        self.email = str(claims.data.get("email") or "")
        self.lang = str(claims.data.get("lang") or "en")
        self.site = str(claims.data["site"])
        self.open_conv = await self.relay.store.open_conversation_of(self.uid)
        wanted = ([self.open_conv] if self.open_conv else []) + list(frame.resume)
        await self._welcome(wanted, frame.resume, lambda st: st.get("visitor") == self.uid)

    def _share_budget(self, who: str) -> None:
        """From ``hello`` on, frames count against the person's budget in this
        process, which a new connection does not refill; a person who spent it
        is turned away before any work is done for them."""
        now = asyncio.get_running_loop().time()
        bucket = self.relay.user_buckets.bucket(who, now)
        if not bucket.take(now):
            raise ProtocolError(ErrorCode.RATE_LIMITED, "too many frames; slow down")
        self.bucket = bucket

    async def _hello_agent(self, frame: p.Hello) -> None:
        claims = verify(self.relay.secret, frame.token, "session", time.time())
        self._share_budget(f"user:{claims.sub}")
        account = await session_account(self.relay.redis, claims)
        if account is None:
            raise ProtocolError(ErrorCode.TOKEN_INVALID, "token is not valid")
        self.role = account.role
        self.uid = account.name
        self.name = account.display_name
        self.teams = account.teams
        self.languages = account.languages
        channel = user_channel("agent", self.uid)
        self.channels.add(channel)
        await self.relay.hub.join(channel, self)
        mine = await self.relay.store.agent_conversations(self.uid)
        if self.role == "agent":
            self.presence_member = f"{self.uid} {self.conn_id}"
            await self.relay.store.set_presence(
                [self.presence_member], int(self.settings.presence_ttl_s * 1000)
            )
            self.relay.kick_sweep()
            wanted = mine + [c for c in frame.resume if c in set(mine)]
            await self._welcome(wanted, frame.resume, lambda st: st.get("agent") == self.uid)
        else:
            # A supervisor's own chats are those taken over; any other only when resumed.
            await self._welcome(mine + list(frame.resume), frame.resume, lambda st: True)

    # ------------------------------------------------------------ delivery

    def on_live(self, conv: str, payload: str) -> None:
        buffer = self.syncing.get(conv)
        if buffer is not None:
            buffer.append(payload)
            return
        if conv not in self.convs:
            return
        if not payload.startswith(SEQ_PREFIX):  # ephemeral: typing
            if f'"id":"{self.uid}"' in payload and f'"role":"{self.role}"' in payload:
                return
            self.send(payload)
            return
        seq = payload[len(SEQ_PREFIX) : payload.index('"', len(SEQ_PREFIX))]
        last = self.convs[conv]
        if last is not None and p.seq_key(seq) <= p.seq_key(last):
            return
        self.convs[conv] = seq
        if self.role == "visitor" and any(f'"{key}":' in payload for key in AGENTS_ONLY):
            payload = _strip_for_visitor(payload)
        self.send(payload)
        at = payload.find('"ts":')
        if at > 0:
            end = at + 5
            while end < len(payload) and payload[end].isdigit():
                end += 1
            with contextlib.suppress(ValueError):
                self.relay.metrics.observe_latency(time.time() - int(payload[at + 5 : end]) / 1000)
        if '"type":"closed"' in payload:
            if self.open_conv == conv:
                self.open_conv = None
            now = time.monotonic()
            self.closed_lately = {
                c: t for c, t in self.closed_lately.items() if now - t < AFTER_CLOSE_S
            }
            self.closed_lately[conv] = now
            self.spawn(self._leave(conv))

    def _after_close(self, frame: dict[str, Any], conv: str | None) -> bool:
        """A nudge for a chat this connection saw close lately (missing_thanks)."""
        closed = self.closed_lately.get(conv or "")
        return (
            frame.get("type") == "nudge"
            and closed is not None
            and time.monotonic() - closed < AFTER_CLOSE_S
        )

    def on_notice(self, channel: str, payload: str) -> None:
        if self._held is not None:
            # The user channel is joined before welcome so that nothing is missed, but
            # no frame may come before welcome: an assignment made meanwhile waits.
            if len(self._held) < MAX_HELD_NOTICES:
                self._held.append((channel, payload))
            return
        data = json.loads(payload)
        if data.get("kind") == "frame":
            # Coaching for this agent (script, nudge, whisper), from any process.
            frame = data.get("frame") or {}
            conv = frame.get("conversation")
            if conv in self.convs or conv in self.watching or self._after_close(frame, conv):
                self.send(frame)
            return
        if data.get("kind") == "assignment":
            self.spawn(self._assignment(data))
        elif data.get("kind") == "revoked":
            self.spawn(self._leave(str(data["conversation"])))

    def on_resync(self) -> None:
        for conv in list(self.convs):
            if conv not in self.syncing:
                # Hold live events back until the stream is read, as when joining: one
                # delivered first would move the cursor past the events being caught up.
                self.syncing[conv] = []
                self.spawn(self._resync(conv))

    async def _resync(self, conv: str) -> None:
        for attempt in range(RESYNC_ATTEMPTS):
            try:
                events = await self.relay.store.events_after(conv, self.convs.get(conv) or "0-0", 0)
            except RedisError as exc:
                # Right after Redis comes back, pooled connections fail once each.
                log.info("resync of %s failed (%s); retrying", conv, exc)
                await asyncio.sleep(RESYNC_BACKOFF_S * 2**attempt)
                continue
            buffered = self.syncing.pop(conv, [])
            for event in events:
                self.on_live(conv, _event_payload(event))
            for payload in buffered:
                self.on_live(conv, payload)
            return
        # Live events were missed and cannot be read: the client reconnects and resumes.
        self.syncing.pop(conv, None)
        await self.close(CloseCode.INTERNAL_ERROR)

    def on_queue(
        self,
        encoded_snapshot: str,
        updates: dict[str, p.QueueUpdate],
        online: dict[str, int] | None = None,
    ) -> None:
        if self.role == "visitor":
            # Without a chat, the visitor hears whom they could chat with now (after welcome).
            count = (online or {}).get(self.lang)
            told = self._told_online
            if self.open_conv is None and told is not None and count is not None and count != told:
                self._told_online = count
                self.send(p.AgentsOnline(agents_online=count))
            for conv in self.convs:
                update = updates.get(conv)
                if update is None:
                    self._last_queue.pop(conv, None)
                    continue
                key = (update.position, update.estimated_wait_s, update.agents_online)
                if self._last_queue.get(conv) != key:
                    self._last_queue[conv] = key
                    self.send(update)
        elif self._counted and encoded_snapshot != self._last_snapshot:  # after welcome
            # The snapshot lists every agent: at most one a second per agent,
            # the newest, so its cost does not grow with agents × queue changes.
            self._pending_snapshot = encoded_snapshot
            if self._snapshot_timer is None:
                loop = asyncio.get_running_loop()
                delay = self._last_snapshot_at + AGENT_SNAPSHOT_INTERVAL_S - loop.time()
                if delay <= 0:
                    self._flush_snapshot()
                else:
                    self._snapshot_timer = loop.call_later(delay, self._flush_snapshot)

    def _flush_snapshot(self) -> None:
        self._snapshot_timer = None
        pending, self._pending_snapshot = self._pending_snapshot, None
        if pending is None or pending == self._last_snapshot or self._closing:
            return
        self._last_snapshot = pending
        self._last_snapshot_at = asyncio.get_running_loop().time()
        self.send(pending)

    async def _assignment(self, data: dict[str, Any]) -> None:
        conv = str(data["conversation"])
        if conv in self.convs and conv not in self.syncing:
            # Already live here: a second notice for the same chat (the repair job
            # announcing what a slow process announced too) repeats no event.
            await self._assignment_again(conv, data)
            return
        if conv in self.syncing:
            await self._leave(conv)
        st = await self.relay.store.state(conv)
        events, _ = await self._begin_join(conv, None)
        self.send(await self._assignment_frame(conv, st, data, events))
        self._end_join(conv, events, None)
        coaching = self.relay.coaching
        if coaching is not None and (data.get("from_agent") or data.get("reason") == "requeue"):
            # From another agent: the cards the customer's mood brought them come along.
            for frame in await coaching.handover(conv, st, {"id": self.uid, "name": self.name}):
                self.send(frame)

    async def _assignment_again(self, conv: str, data: dict[str, Any]) -> None:
        """An assignment for a chat this connection has: only the events it has not seen."""
        st = await self.relay.store.state(conv)
        events = await self.relay.store.events_after(conv, self.convs.get(conv) or "0-0", 0)
        frame = await self._assignment_frame(conv, st, data, [])
        if conv not in self.convs or conv in self.syncing:
            return  # left or resyncing meanwhile: that path delivers what is due
        # Live events may have gone out while the stream was read.
        last = self.convs[conv]
        if last is not None:
            events = [e for e in events if p.seq_key(e["seq"]) > p.seq_key(last)]
        self.send(frame.model_copy(update={"events": events}))
        if events:
            self.convs[conv] = events[-1]["seq"]

    async def _assignment_frame(
        self, conv: str, st: dict[str, str], data: dict[str, Any], events: list[dict[str, Any]]
    ) -> p.Assignment:
        from_agent = (
            await self.relay.names.agent(data["from_agent"]) if data.get("from_agent") else None
        )
        return p.Assignment(
            conversation=conv,
            reason=data.get("reason", "new"),
            visitor=p.VisitorRef(**visitor_of(st), lang=st.get("lang", "en")),
            note=data.get("note"),
            from_agent=from_agent,
            events=events,
        )

    # ------------------------------------------------------------ frames

    def _conv_for(self, frame: Any, ref: str | None) -> str:
        conv: str | None = frame.conversation
        if self.role == "visitor":
            if conv is None:
                if self.open_conv is None:
                    raise ProtocolError(ErrorCode.NO_CONVERSATION, "no open conversation", ref)
                return self.open_conv
            if conv != self.open_conv and conv not in self.convs:
                raise ProtocolError(ErrorCode.NOT_IN_CONVERSATION, f"you are not in {conv}", ref)
            return conv
        if conv is None:
            raise ProtocolError(ErrorCode.INVALID_FRAME, "conversation: field required", ref)
        return conv

    def _actor(self) -> str:
        if self.role == "visitor":
            return f"v:{self.uid}"
        if self.role == "agent":
            return f"a:{self.uid}"
        return "open"

    @staticmethod
    def _raise_for(outcome: str, conv: str, ref: str | None) -> None:
        if outcome == "closed":
            raise ProtocolError(ErrorCode.CONVERSATION_CLOSED, f"{conv} is closed", ref)
        if outcome in ("forbidden", "missing"):
            raise ProtocolError(ErrorCode.NOT_IN_CONVERSATION, f"you are not in {conv}", ref)

    async def _store(
        self,
        conv: str,
        event: p.Event,
        *,
        dedup: str = "",
        state: list[tuple[str, str]] | None = None,
        actor: str | None = None,
    ) -> tuple[str, str | None]:
        body = p.dump(event)
        body.pop("seq")
        for optional in ("contact", "override"):
            if optional in body and body[optional] is None:
                body.pop(optional)
        return await self.relay.store.append(
            conv, body, actor=actor or self._actor(), dedup=dedup, state=state or []
        )

    async def _on_message(self, frame: p.Message, contact: dict[str, str] | None = None) -> None:
        if len(frame.text) > self.settings.max_text_chars:
            raise ProtocolError(
                ErrorCode.TEXT_TOO_LONG,
                f"text is over {self.settings.max_text_chars} characters",
                frame.id,
            )
        created = False
        if self.role == "visitor":
            if frame.conversation is not None and frame.conversation != self.open_conv:
                st = await self.relay.store.state(frame.conversation)
                if st.get("visitor") != self.uid:
                    raise ProtocolError(
                        ErrorCode.NOT_IN_CONVERSATION,
                        f"you are not in {frame.conversation}",
                        frame.id,
                    )
                conv = frame.conversation
            else:
                if self.open_conv is None:
                    await self._open_conversation()
                    created = True
                assert self.open_conv is not None
                conv = self.open_conv
        else:
            conv = self._conv_for(frame, frame.id)
            if self.role == "supervisor":
                await self._join_live(conv)
        coaching = self.relay.coaching
        text = frame.text
        sent_check: SentCheck | None = None
        if coaching is None or self.role == "visitor":
            # Card numbers never reach Redis, whoever wrote them, coach or no coach.
            text, _ = mask_cards(text)
        else:
            try:
                sent_check = coaching.check_sent(text, await self._conv_lang(conv), frame.override)
            except CoachingError as refusal:
                raise ProtocolError(
                    ErrorCode.SENSITIVE_DATA,
                    str(refusal),
                    frame.id,
                    extra={
                        "conversation": conv,
                        "flags": [f.model_dump() for f in refusal.flags],
                        "suggestions": [s for f in refusal.flags for s in f.suggestions],
                    },
                ) from None
            text = sent_check.text
        event = p.MessageEvent(
            conversation=conv,
            ts=now_ms(),
            id=frame.id,
            from_=self.party,
            text=text,
            contact=contact,
            override=True if sent_check is not None and sent_check.refused else None,
        )
        # The visitor's first words tell the chat apart in the queue, on Live and in review.
        state = [("?preview", text[:80])] if self.role == "visitor" else []
        if contact is not None:
            state.append(("left_message", "1"))
        outcome, seq = await self._store(
            conv, event, dedup=f"{self.role}:{self.uid}:{frame.id}", state=state
        )
        if outcome == "closed" and self.role == "visitor" and frame.conversation is None:
            self.open_conv = None  # closed meanwhile: this message starts a new conversation
            await self._open_conversation()
            created = True
            conv = self.open_conv  # type: ignore[assignment]
            event = event.model_copy(update={"conversation": conv})
            outcome, seq = await self._store(
                conv, event, dedup=f"{self.role}:{self.uid}:{frame.id}", state=state
            )
        self._raise_for(outcome, conv, frame.id)
        assert seq is not None
        if outcome == "ok":
            self.relay.metrics.messages_total += 1
        self.send(p.Ack(ref=frame.id, conversation=conv, seq=seq, duplicate=outcome == "dup"))
        if coaching is not None and outcome == "ok":
            # After the ack: coaching never delays a message.
            if sent_check is not None:
                self.spawn(self._coach_sent(conv, frame, seq, sent_check))
            elif self.role == "visitor":
                self.spawn(self._coach_customer(conv, seq, text))
        if created:
            left = contact is not None
            await self.relay.store.enqueue([Waiting(conv, self.lang, left=left)], front=False)
            if not left:
                await self.relay.router.route()
        elif contact is not None and outcome == "ok":
            await self.relay.store.leave(conv)  # no longer waiting to chat, if it was

    async def _conv_lang(self, conv: str) -> str:
        """A conversation's language, read once per connection."""
        lang = self.conv_langs.get(conv)
        if lang is None:
            lang = (await self.relay.store.state(conv)).get("lang") or self.lang
            self.conv_langs[conv] = lang
        return lang

    async def _coach_customer(self, conv: str, seq: str, text: str) -> None:
        coaching = self.relay.coaching
        assert coaching is not None
        await coaching.customer_message(conv, await self.relay.store.state(conv), seq, text)

    async def _coach_sent(self, conv: str, frame: p.Message, seq: str, check: SentCheck) -> None:
        coaching = self.relay.coaching
        assert coaching is not None
        outcome, _, nudges = await coaching.record_sent(
            conv,
            await self.relay.store.state(conv),
            {"id": self.uid, "name": self.name},
            frame.id,
            seq,
            check,
            self.drafts.get(conv),
            frame.override,
        )
        self.send(
            {
                "v": 1,
                "type": "coach_checked",
                "conversation": conv,
                "ref": frame.id,
                "flags": [f.model_dump() for f in check.flags],
                "outcome": outcome,
            }
        )
        for nudge in nudges:
            self.send(nudge_frame(conv, nudge))

    async def _on_draft(self, frame: p.Draft) -> None:
        self._require_role(("agent", "supervisor"), frame.id)
        conv = frame.conversation
        if conv not in self.convs:
            raise ProtocolError(ErrorCode.NOT_IN_CONVERSATION, f"you are not in {conv}", frame.id)
        coaching = self.relay.coaching
        if coaching is None:
            self.send(coach_frame(conv, frame.draft_id, []))
            return
        lang = await self._conv_lang(conv)
        if coaching.coach is not None:  # a reply in English is checked as English
            lang = coaching.coach.language_written(frame.text, lang)
        self.relay.drafts.put(self, conv, frame.draft_id, frame.text, lang)

    def answer_draft(self, conv: str, draft_id: int, seconds: float, flags: str) -> None:
        """Answer a draft the draft checker checked (``flags`` as JSON)."""
        coaching = self.relay.coaching
        if coaching is None or self._closing:
            return
        drafts = self.drafts.setdefault(conv, Drafts())
        if coaching.take_checked_draft(drafts, draft_id, seconds, flags):
            self.send(coach_frame_json(conv, draft_id, flags))

    def coach_draft(self, conv: str, draft_id: int, text: str, lang: str) -> None:
        """Check a draft the desk handed over and answer with a ``coach`` frame."""
        coaching = self.relay.coaching
        if coaching is None or self._closing:
            return
        drafts = self.drafts.setdefault(conv, Drafts())
        flags = coaching.check_draft(drafts, draft_id, text, lang)
        if flags is not None:
            self.send(coach_frame(conv, draft_id, flags))

    def _require_role(self, roles: tuple[str, ...], ref: str | None) -> None:
        if self.role not in roles:
            raise ProtocolError(ErrorCode.FORBIDDEN, f"only {' and '.join(roles)}s do this", ref)

    async def _on_whisper(self, frame: p.Whisper) -> None:
        self._require_role(("supervisor",), frame.id)
        st = await self.relay.store.state(frame.conversation)
        if not st:
            raise ProtocolError(ErrorCode.NO_CONVERSATION, "no such conversation", frame.id)
        agent = st.get("agent") or ""
        if not agent or st.get("status") == "closed":
            raise ProtocolError(ErrorCode.AGENT_UNAVAILABLE, "no agent is in this chat", frame.id)
        sender = {"id": self.uid, "name": self.name}
        if self.relay.coaching is not None:
            await self.relay.coaching.whisper(frame.conversation, agent, sender, frame.text)
        else:
            whisper = {
                "v": 1,
                "type": "whisper",
                "conversation": frame.conversation,
                "from": sender,
                "text": frame.text,
                "ts": now_ms(),
            }
            await self.relay.redis.publish(
                user_channel("agent", agent), json.dumps({"kind": "frame", "frame": whisper})
            )
        self.send(p.Pong(ref=frame.id))

    async def _on_watch(self, frame: p.Watch) -> None:
        self._require_role(("supervisor",), frame.id)
        conv = frame.conversation
        st = await self.relay.store.state(conv)
        if not st:
            raise ProtocolError(ErrorCode.NO_CONVERSATION, "no such conversation", frame.id)
        self.watching.add(conv)
        if conv in self.syncing:
            return
        if conv in self.convs:
            # Joined already (a chat this supervisor took over): what was sent so far.
            events, truncated = await self.relay.store.history(conv, self.settings.history_limit)
            last = self.convs.get(conv)
            sent = [e for e in events if last and p.seq_key(e["seq"]) <= p.seq_key(last)]
            self.send(self._watching_frame(conv, st, sent, truncated))
            return
        events, truncated = await self._begin_join(conv, frame.resume)
        self.send(self._watching_frame(conv, st, events, truncated))
        self._end_join(conv, events, frame.resume)

    @staticmethod
    def _watching_frame(
        conv: str, st: dict[str, str], events: list[dict[str, Any]], truncated: bool
    ) -> dict[str, Any]:
        return {
            "v": 1,
            "type": "watching",
            "conversation": conv,
            "events": events,
            "agent": st.get("agent") or None,
            "status": st.get("status"),
            "lang": st.get("lang"),
            "history_truncated": truncated,
        }

    async def _on_unwatch(self, frame: p.Unwatch) -> None:
        self._require_role(("supervisor",), frame.id)
        self.watching.discard(frame.conversation)
        if frame.conversation in self.convs:
            await self._leave(frame.conversation)

    async def _on_take_over(self, frame: p.TakeOver) -> None:
        self._require_role(("supervisor",), frame.id)
        conv = frame.conversation
        st = await self.relay.store.state(conv)
        if not st:
            raise ProtocolError(ErrorCode.NO_CONVERSATION, "no such conversation", frame.id)
        if st.get("status") == "closed":
            raise ProtocolError(ErrorCode.CONVERSATION_CLOSED, f"{conv} is closed", frame.id)
        previous = await self.relay.store.take_over(conv, self.uid) or st.get("agent") or ""
        if previous == self.uid:
            return  # already theirs
        # As a transfer: the visitor is told who is with them now, every connection of
        # the supervisor gets the chat as an ``assignment``, the previous agent loses it.
        await self.relay.router.hand_over(conv, previous, self.uid, frame.note, taken_over=True)
        await self.relay.router.notify_queue_changed()

    async def _on_csat(self, frame: p.Csat) -> None:
        conv = frame.conversation or self._last_closed
        if not conv:
            raise ProtocolError(ErrorCode.NO_CONVERSATION, "no conversation to rate", frame.id)
        st = await self.relay.store.state(conv)
        if st.get("visitor") != self.uid:
            raise ProtocolError(ErrorCode.NOT_IN_CONVERSATION, f"you are not in {conv}", frame.id)
        if not await self.relay.store.rate(conv, frame.score, frame.comment or ""):
            raise ProtocolError(ErrorCode.FORBIDDEN, "this chat is already rated", frame.id)
        agent = st.get("agent") or ""
        if agent:
            # The agent's scorecard is another key (another Redis Cluster slot): counted
            # after the rating is safe.
            key = score_key(agent, day_of(now_ms()))
            pipe = self.relay.redis.pipeline(transaction=False)
            pipe.hincrby(key, "csat_sum", frame.score)
            pipe.hincrby(key, "csat_count", 1)
            await pipe.execute()
        self.send(p.Pong(ref=frame.id))

    async def _open_conversation(self) -> None:
        conv, _ = await self.relay.store.create_conversation(
            site=self.site,
            visitor=self.uid,
            visitor_name=self.given_name,
            visitor_email=self.email,
            lang=self.lang,
        )
        self.open_conv = conv
        await self._join_live(conv)

    async def _agents_online(self) -> int:
        """Agents who may receive chats now; for a visitor, those who speak their language."""
        if self.role == "visitor":
            return await self.relay.store.online_for(self.lang)
        return await self.relay.store.online_count()

    async def _on_leave_message(self, frame: p.LeaveMessage) -> None:
        if await self._agents_online() > 0:
            raise ProtocolError(
                ErrorCode.AGENTS_ONLINE, "agents are online: send a message", frame.id
            )
        self.given_name = frame.name
        self.name = visitor_name(self.uid, frame.name)
        msg = p.Message(type="message", id=frame.id, text=frame.text)
        await self._on_message(msg, contact={"name": frame.name, "email": frame.email})

    async def _on_typing(self, frame: p.Typing) -> None:
        conv = self._conv_for(frame, frame.id)
        if conv not in self.convs:
            raise ProtocolError(ErrorCode.NOT_IN_CONVERSATION, f"you are not in {conv}", frame.id)
        out = p.TypingOut(conversation=conv, from_=self.party, active=frame.active)
        await self.relay.redis.publish(live_channel(conv), p.encode(out))

    async def _on_read(self, frame: p.Read) -> None:
        conv = self._conv_for(frame, frame.id)
        event = p.ReadEvent(conversation=conv, ts=now_ms(), by=self.party, up_to=frame.seq)
        # The same receipt again (a second tab of the same person, a resend) is stored once.
        dedup = f"read:{self.role}:{self.uid}:{frame.seq}"
        outcome, _ = await self._store(conv, event, dedup=dedup)
        if outcome == "forbidden" and self.role == "agent" and await self._had(conv):
            return  # a receipt that crossed the hand-over (transfer, take-over): not an error
        self._raise_for(outcome, conv, frame.id)

    async def _had(self, conv: str) -> bool:
        """Whether this agent was ever assigned ``conv``."""
        return await self.relay.store.assigned_since(self.uid, conv) is not None

    async def _on_ping(self, frame: p.Ping) -> None:
        self.send(p.Pong(ref=frame.id))

    async def _on_close(self, frame: p.Close) -> None:
        conv = self._conv_for(frame, frame.id)
        st = await self.relay.store.state(conv)
        if self.role == "visitor" and st.get("status") == "queued" and st.get("left_message"):
            # The visitor was told they would get an answer by email: the message stays for
            # the next agent rather than leave the queue unanswered.
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                "your message waits for an agent, who will answer by email",
                frame.id,
            )
        event = p.ClosedEvent(conversation=conv, ts=now_ms(), by=self.party)
        outcome, _ = await self._store(
            conv, event, state=[("status", "closed"), ("closed_at", str(now_ms()))]
        )
        self._raise_for(outcome, conv, frame.id)
        await self.relay.store.release(conv)
        await self.relay.store.clear_open(st.get("visitor", ""), conv)
        await self.relay.store.forget_visitor_seen(conv)
        if self.role == "visitor":
            self._last_closed = conv
        if self.relay.coaching is not None:
            self.spawn(self.relay.coaching.closed(conv, st))
        if st.get("assigned_at"):
            handled = (now_ms() - int(st["assigned_at"])) / 1000
            await self.relay.store.record_handle_time(handled, self.settings.avg_handle_s)
        await self.relay.router.route()
        await self.relay.router.notify_queue_changed()

    async def _agent_only(self, ref: str | None) -> None:
        if self.role != "agent":
            raise ProtocolError(ErrorCode.FORBIDDEN, "only agents do this", ref)

    async def _on_status(self, frame: p.Status) -> None:
        await self._agent_only(frame.id)
        current = await self.relay.store.agent(self.uid)
        capacity = frame.capacity or int(current.get("capacity") or self.settings.default_capacity)
        languages = list(frame.languages or self.languages)
        self.languages = languages
        requeue = await self.relay.store.set_agent_status(
            self.uid, self.name, frame.status, capacity, languages, self.teams
        )
        # A status change is answered with a snapshot at once.
        self._last_snapshot = None
        self._last_snapshot_at = 0.0
        if self._snapshot_timer is not None:
            self._snapshot_timer.cancel()
            self._snapshot_timer = None
        if requeue:
            await self.relay.router.requeue([(self.uid, c) for c in requeue])
        else:
            await self.relay.router.route()
        await self.relay.router.notify_queue_changed()

    async def _on_accept(self, frame: p.Accept) -> None:
        await self._agent_only(frame.id)
        outcome, conv = await self.relay.store.accept(self.uid, frame.conversation or "")
        if outcome != "ok" or conv is None:
            code = {
                "no_capacity": ErrorCode.NO_CAPACITY,
                "not_queued": ErrorCode.NOT_QUEUED,
                "queue_empty": ErrorCode.QUEUE_EMPTY,
            }.get(outcome, ErrorCode.NOT_QUEUED)
            why = f"cannot accept: {outcome.replace('_', ' ')}"
            if outcome == "no_capacity":
                why = await self._why_no_capacity()
            raise ProtocolError(code, why, frame.id)
        await self.relay.router.announce([(conv, self.uid)], reason="accepted")

    async def _why_no_capacity(self) -> str:
        """Why this agent cannot take a chat now, as they would put it right."""
        me = await self.relay.store.agent(self.uid)
        status = me.get("status") or "offline"
        if status != "online":
            return f"you are {status}: set yourself online to accept chats"
        cap = me.get("capacity", "?")
        return f"you have as many chats as your capacity ({cap}): close one first"

    async def _on_transfer(self, frame: p.Transfer) -> None:
        if self.role not in ("agent", "supervisor"):
            raise ProtocolError(ErrorCode.FORBIDDEN, "only agents transfer", frame.id)
        conv = frame.conversation
        st = await self.relay.store.state(conv)
        if not st or (self.role == "agent" and st.get("agent") != self.uid):
            raise ProtocolError(ErrorCode.NOT_IN_CONVERSATION, f"you are not in {conv}", frame.id)
        if st.get("status") == "closed":
            raise ProtocolError(ErrorCode.CONVERSATION_CLOSED, f"{conv} is closed", frame.id)
        router = self.relay.router
        me = self.uid if self.role == "agent" else ""
        previous = st.get("agent") or ""
        from_ref = await self.relay.names.agent(previous) if previous else None
        if frame.to_agent is not None:
            target = await get_account(self.relay.redis, frame.to_agent)
            if target is None or target.role != "agent":
                raise ProtocolError(ErrorCode.AGENT_UNAVAILABLE, "no such agent", frame.id)
            # A supervisor's hand-over (a chat taken over handed back) is theirs to decide:
            # the agent's seat may have been filled from the queue meanwhile.
            outcome, prev = await self.relay.store.transfer_to_agent(
                conv, me, target.name, over_capacity=self.role == "supervisor"
            )
            if outcome != "ok":
                code = (
                    ErrorCode.AGENT_UNAVAILABLE
                    if outcome == "agent_unavailable"
                    else ErrorCode.NOT_IN_CONVERSATION
                )
                raise ProtocolError(code, f"cannot transfer: {outcome.replace('_', ' ')}", frame.id)
            await router.hand_over(conv, prev or previous, target.name, frame.note)
        else:
            team = frame.to_team or ""
            teams = {
                t
                for acc in await list_accounts(self.relay.redis)
                if acc.role == "agent"
                for t in acc.teams
            }
            if team not in teams:
                known = ", ".join(sorted(teams)) or "none"
                raise ProtocolError(
                    ErrorCode.UNKNOWN_TEAM, f"no team {team!r}; teams: {known}", frame.id
                )
            waiting = await router.requeued(conv, st, team)
            event = p.TransferredEvent(
                conversation=conv,
                ts=now_ms(),
                from_agent=from_ref,
                agent=None,
                team=team,
                note=frame.note or None,
            )
            await self._store(
                conv,
                event,
                actor="open",
                state=[
                    ("status", "queued"),
                    ("agent", ""),
                    ("next_reason", "transfer"),
                    ("handoff_note", frame.note),
                    ("handoff_from", previous),
                    ("left_message", "1" if waiting.left else ""),
                ],
            )
            if previous:  # a transfer to a team goes to someone else in it
                await self.relay.store.keep_from(conv, previous)
            await self.relay.store.enqueue([waiting], front=True)
            if previous:
                await router.revoke(previous, conv)
            await router.route()
        await router.notify_queue_changed()
