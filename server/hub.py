"""Fan-out between processes: Redis pub/sub to the connections of this process.

Live events arrive on ``{conv:<id>}:live``; notices for one user (an agent's
new assignment) on ``{tl}:u:<role>:<id>``; queue changes on one channel. After
a lost pub/sub connection every subscriber resynchronises from the streams,
so nothing published meanwhile is missed.

In a Redis Cluster every node hears every ``PUBLISH``: when the connection is
lost, the hub connects to the next node it knows (``fallbacks``), so live
delivery goes on without the named node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from server.store import QUEUE_CHANNEL

log = logging.getLogger("tactline.hub")

# Timeouts
SUBSCRIBE_TIMEOUT_S = 5.0
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 2.0

LIVE_PREFIX = "{conv:"
LIVE_SUFFIX = "}:live"


class Subscriber(Protocol):
    def on_live(self, conv: str, payload: str) -> None: ...
    def on_notice(self, channel: str, payload: str) -> None: ...
    def on_resync(self) -> None: ...


class Hub:
    def __init__(
        self,
        redis: Redis,
        on_queue_changed: Callable[[], None],
        fallbacks: Callable[[], Sequence[Redis]] = tuple,
    ) -> None:
        self.redis = redis
        #: Other nodes to subscribe on when ``redis`` cannot be reached (a cluster's).
        self.fallbacks = fallbacks
        self.on_queue_changed = on_queue_changed
        self.subs: dict[str, set[Subscriber]] = defaultdict(set)
        self._confirmed: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = defaultdict(list)
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self._reconnected = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hub")
        await asyncio.wait_for(self.connected.wait(), SUBSCRIBE_TIMEOUT_S)

    async def stop(self) -> None:
        if self._task:
            for _ in range(5):
                self._task.cancel()
                done, _ = await asyncio.wait({self._task}, timeout=0.5)
                if done:
                    break
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def join(self, channel: str, sub: Subscriber) -> None:
        """Subscribe ``sub``; returns once Redis confirmed the subscription."""
        first = channel not in self.subs or not self.subs[channel]
        self.subs[channel].add(sub)
        if channel in self._confirmed:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[channel].append(fut)
        if first and self._pubsub is not None and self.connected.is_set():
            try:
                await self._pubsub.subscribe(channel)
            except RedisError:
                log.warning("subscribe %s failed; will resubscribe on reconnect", channel)
        await asyncio.wait_for(fut, SUBSCRIBE_TIMEOUT_S)

    async def leave(self, channel: str, sub: Subscriber) -> None:
        subs = self.subs.get(channel)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self.subs[channel]
            self._confirmed.discard(channel)
            if self._pubsub is not None and self.connected.is_set():
                with contextlib.suppress(RedisError):
                    await self._pubsub.unsubscribe(channel)

    def _node(self, turn: int) -> Redis:
        """The node for the ``turn``-th connection: the named one, then each other in turn."""
        try:
            nodes = [self.redis, *self.fallbacks()]
        except Exception:  # noqa: BLE001 - the named node is always there to try
            log.exception("listing pub/sub nodes failed")
            nodes = [self.redis]
        return nodes[turn % len(nodes)]

    async def _run(self) -> None:
        delay = RECONNECT_MIN_S
        first = True
        turn = 0
        while True:
            redis = self._node(turn)
            try:
                self._pubsub = redis.pubsub()
                channels = [QUEUE_CHANNEL, *self.subs.keys()]
                self._confirmed.clear()
                await self._pubsub.subscribe(*channels)
                if self._pubsub.connection is not None:
                    self._pubsub.connection.register_connect_callback(self._on_reconnect)
                self.connected.set()
                delay = RECONNECT_MIN_S
                if not first:
                    log.info(
                        "pub/sub reconnected to %s; resynchronising %d channels",
                        _address(redis),
                        len(channels),
                    )
                await self._read(resync=not first)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.connected.clear()
                log.warning("pub/sub connection lost: %s", exc)
            except Exception:  # noqa: BLE001 - keep fan-out alive, log the cause
                self.connected.clear()
                log.exception("pub/sub reader failed")
            first = False
            turn += 1  # the next try goes to the next node, if there is another
            if self._pubsub is not None:
                if self._pubsub.connection is not None:
                    self._pubsub.connection.deregister_connect_callback(self._on_reconnect)
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _on_reconnect(self, connection: object) -> None:
        """redis-py reconnected the pub/sub connection by itself and resubscribed: whatever
        was published meanwhile is lost, so resynchronise once the subscriptions are back."""
        self._confirmed.clear()
        self._reconnected = True

    async def _read(self, resync: bool) -> None:
        assert self._pubsub is not None
        pending_resync = resync
        while True:
            msg = await self._pubsub.get_message(timeout=1.0)
            if msg is None:
                continue
            kind = msg["type"]
            channel = msg["channel"]
            if kind == "subscribe":
                if self._reconnected:
                    self._reconnected = False
                    pending_resync = True
                    log.info("pub/sub reconnected by the client; resynchronising")
                self._confirmed.add(channel)
                for fut in self._waiters.pop(channel, []):
                    if not fut.done():
                        fut.set_result(None)
                if pending_resync and all(c in self._confirmed for c in self.subs):
                    pending_resync = False
                    self.on_queue_changed()
                    for sub in {s for subs in self.subs.values() for s in subs}:
                        sub.on_resync()
                continue
            if kind != "message":
                continue
            data = msg["data"]
            if channel.startswith(LIVE_PREFIX):
                conv = channel[len(LIVE_PREFIX) : -len(LIVE_SUFFIX)]
                for sub in list(self.subs.get(channel, ())):
                    sub.on_live(conv, data)
            elif channel == QUEUE_CHANNEL:
                self.on_queue_changed()
            else:
                for sub in list(self.subs.get(channel, ())):
                    sub.on_notice(channel, data)


def _address(redis: Redis) -> str:
    kwargs = redis.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"
