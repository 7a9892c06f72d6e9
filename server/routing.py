"""Routing: assignment results announced, requeues, queue positions and estimates.

The decisions themselves are Lua scripts in ``server/store.py`` (atomic in
Redis, so two processes never assign one conversation twice).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from redis.asyncio import Redis

from server import protocol as p
from server.accounts import get_account
from server.store import QUEUE_CHANNEL, Store, Waiting, now_ms, user_channel, visitor_name

log = logging.getLogger("tactline.routing")

# Timings
NAME_TTL_S = 5.0  # how long a display name is kept before it is read again


def estimate_wait_s(position: int, avg_handle_s: float, agents_online: int) -> int | None:
    """``ceil(position × average handling time ÷ online agents)``; None with nobody online."""
    if agents_online <= 0:
        return None
    return math.ceil(position * avg_handle_s / agents_online)


class Names:
    """Display names of accounts, each kept for ``ttl_s`` seconds: a renamed account
    is named anew within that time in every process, with nothing to tell them."""

    def __init__(
        self, redis: Redis, ttl_s: float = NAME_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.r = redis
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, tuple[str, float]] = {}  # id -> name, until when

    async def agent(self, uid: str) -> p.AgentRef:
        now = self.clock()
        kept = self._cache.get(uid)
        if kept is None or kept[1] <= now:
            acc = await get_account(self.r, uid)
            kept = (acc.display_name if acc else uid, now + self.ttl_s)
            self._cache[uid] = kept
        return p.AgentRef(id=uid, name=kept[0])


class Router:
    def __init__(self, store: Store, names: Names, avg_handle_default: float) -> None:
        self.store = store
        self.names = names
        self.avg_default = avg_handle_default

    async def requeued(self, conv: str, state: dict[str, str], team: str = "") -> Waiting:
        """A conversation going back to the queue (its agent left, a team transfer).

        A left message goes back to wait for an ``accept`` again, unless its visitor
        wrote in the chat after an agent took it: then it is a live chat, back in line
        to be routed like any other, and the caller stores ``left_message`` as this
        says with the hand-off, so it is not asked again.
        """
        left = state.get("left_message") == "1" and not await self.store.chatted_since_accepted(
            conv
        )
        return Waiting(conv, state.get("lang", "en"), team, left)

    async def notify_queue_changed(self) -> None:
        await self.store.r.publish(QUEUE_CHANNEL, "1")

    async def route(self) -> list[tuple[str, str]]:
        """Match queued conversations with available agents and announce the results."""
        pairs = await self.store.assign()
        await self.announce(pairs)
        return pairs

    async def announce(self, pairs: Sequence[tuple[str, str]], reason: str | None = None) -> None:
        for conv, agent in pairs:
            st = await self.store.state(conv)
            why = reason or st.get("next_reason") or "new"
            ref = await self.names.agent(agent)
            event = p.dump(
                p.AssignedEvent(
                    conversation=conv,
                    ts=now_ms(),
                    agent=ref,
                    left_message=st.get("left_message") == "1",
                )
            )
            event.pop("seq")
            outcome, _ = await self.store.append(
                conv,
                event,
                actor="open",
                state=[
                    ("status", "assigned"),
                    ("agent", agent),
                    ("next_reason", ""),
                    ("handoff_note", ""),
                    ("handoff_from", ""),
                    ("assigned_at", str(now_ms())),
                ],
            )
            if outcome != "ok":  # closed meanwhile: give the seat back
                await self.store.release(conv)
                continue
            notice: dict[str, Any] = {
                "kind": "assignment",
                "conversation": conv,
                "reason": why,
                "note": st.get("handoff_note") or None,
                "from_agent": st.get("handoff_from") or None,
            }
            await self.store.r.publish(user_channel("agent", agent), json.dumps(notice))
        if pairs:
            await self.notify_queue_changed()

    async def repair(self, older_than_ms: int) -> list[tuple[str, str]]:
        """Announce assignments that were decided but never announced: the
        process that ran the routing script died before it could.

        - A chat still with another agent was being transferred to this one:
          it is announced as that hand-over (``transferred``).
        - A chat its agent had handed to the queue (a requeue or a transfer to
          a team) after the routing keys gave it to them, but that never got
          there: it is put in the queue now, once that hand-off is older than
          ``older_than_ms`` too (until then its own process may be queueing it,
          and queueing it twice would take it back from the agent it went to).
        - Any other came from the queue: ``assigned``.
        """
        cutoff = now_ms() - older_than_ms
        pairs = await self.store.unannounced(older_than_ms)
        if pairs:
            log.warning("announcing %d assignments nobody announced: %s", len(pairs), pairs)
        from_queue, to_queue = [], []
        for conv, agent in pairs:
            st = await self.store.state(conv)
            previous = st.get("agent") or ""
            if st.get("status") == "assigned" and previous and previous != agent:
                await self.hand_over(conv, previous, agent)
            elif (handoff := await self._handed_to_queue(conv, agent)) is not None:
                team, at = handoff
                if at > cutoff:
                    continue  # just handed on: left to the process doing it, or the next run
                to_queue.append(await self.requeued(conv, st, team))
                await self.revoke(agent, conv)
            else:
                from_queue.append((conv, agent))
        await self.announce(from_queue)
        if to_queue:
            await self.store.enqueue(to_queue, front=True)
            await self.route()
        if len(from_queue) < len(pairs):
            await self.notify_queue_changed()
        return pairs

    async def _handed_to_queue(self, conv: str, agent: str) -> tuple[str, int] | None:
        """The team (``''`` for any) and the time (ms) if the chat's last hand-off
        gave it to the queue after the routing keys gave it to ``agent``; else None."""
        event = await self.store.last_handoff(conv)
        if event is None or event["type"] != "transferred" or event.get("agent") is not None:
            return None
        at = int(event.get("ts", 0))
        since = await self.store.assigned_since(agent, conv)
        if since is None or since >= at:
            return None  # given to this agent from the queue afterwards
        return str(event.get("team") or ""), at

    async def hand_over(
        self, conv: str, previous: str, agent: str, note: str = "", *, taken_over: bool = False
    ) -> None:
        """Announce a chat the routing keys moved from ``previous`` to ``agent`` (a
        supervisor taking it over when ``taken_over``): the ``transferred`` event, the new
        agent's assignment, the old one's revocation."""
        event = p.dump(
            p.TransferredEvent(
                conversation=conv,
                ts=now_ms(),
                from_agent=await self.names.agent(previous) if previous else None,
                agent=await self.names.agent(agent),
                note=note or None,
                taken_over=taken_over,
            )
        )
        event.pop("seq")
        outcome, _ = await self.store.append(
            conv,
            event,
            actor="open",
            state=[("status", "assigned"), ("agent", agent), ("assigned_at", str(now_ms()))],
        )
        if outcome != "ok":  # closed meanwhile: give the seat back
            await self.store.release(conv)
            return
        notice = {
            "kind": "assignment",
            "conversation": conv,
            "reason": "transfer",
            "note": note or None,
            "from_agent": previous or None,
        }
        await self.store.r.publish(user_channel("agent", agent), json.dumps(notice))
        if previous:
            await self.revoke(previous, conv)

    async def revoke(self, agent: str, conv: str) -> None:
        """Tell the agent's connections they no longer hold ``conv``."""
        await self.store.r.publish(
            user_channel("agent", agent), json.dumps({"kind": "revoked", "conversation": conv})
        )

    async def requeue(self, pairs: Sequence[tuple[str, str]], *, note: str = "") -> None:
        """Put conversations of an agent who left back at the front of the queue."""
        items = []
        for agent, conv in pairs:
            st = await self.store.state(conv)
            if not st or st.get("status") == "closed":
                await self.store.release(conv)
                continue
            waiting = await self.requeued(conv, st)
            from_ref = await self.names.agent(agent)
            event = p.dump(
                p.TransferredEvent(
                    conversation=conv,
                    ts=now_ms(),
                    from_agent=from_ref,
                    agent=None,
                    team=None,
                    note=note or None,
                )
            )
            event.pop("seq")
            await self.store.append(
                conv,
                event,
                actor="open",
                state=[
                    ("status", "queued"),
                    ("agent", ""),
                    ("next_reason", "requeue"),
                    ("handoff_note", note),
                    ("handoff_from", ""),
                    ("left_message", "1" if waiting.left else ""),
                ],
            )
            items.append(waiting)
            await self.revoke(agent, conv)
        if items:
            await self.store.enqueue(items, front=True)
        await self.route()

    async def snapshot(self) -> tuple[p.QueueSnapshot, dict[str, p.QueueUpdate]]:
        """The queue as agents see it, and each visitor's place in line.

        A visitor's place and estimate count only the visitors waiting to chat
        and the online agents who speak their language; a message left for the
        next agent is not a place in line, and its visitor is sent none.
        """
        r = self.store.r
        queue = await self.store.queue()
        now = now_ms()
        pipe = r.pipeline(transaction=False)
        for conv, _ in queue:
            pipe.hmget(
                f"{{conv:{conv}}}:state", "lang", "created", "preview", "visitor", "visitor_name"
            )
            pipe.hget("{tl}:qteam", conv)
        rows = await pipe.execute() if queue else []
        active = sorted(cast(set[str], await r.smembers("{tl}:active")))
        pipe = r.pipeline(transaction=False)
        for a in active:
            pipe.hgetall(f"{{tl}}:agent:{a}")
            pipe.scard(f"{{tl}}:aconvs:{a}")
        agent_rows = await pipe.execute() if active else []
        online = await self.store.online_by_lang((row[0] or "en") for row in rows[::2])
        avg = await self.store.avg_handle_s(self.avg_default)
        entries: list[p.QueueEntry] = []
        updates: dict[str, p.QueueUpdate] = {}
        for i, (conv, left) in enumerate(queue):
            (lang, created, preview, visitor, given_name), team = rows[2 * i : 2 * i + 2]
            lang = lang or "en"
            entries.append(
                p.QueueEntry(
                    conversation=conv,
                    lang=lang,
                    position=i + 1,
                    waiting_s=max(0, (now - int(created or now)) // 1000),
                    team=team or None,
                    left_message=left,
                    preview=preview or "",
                    visitor_name=visitor_name(visitor or "", given_name),
                )
            )
            if not left:  # the live chats come first: i + 1 is the place in line
                updates[conv] = p.QueueUpdate(
                    conversation=conv,
                    position=i + 1,
                    estimated_wait_s=estimate_wait_s(i + 1, avg, online[lang]),
                    agents_online=online[lang],
                )
        agents = []
        for j, a in enumerate(active):
            h, open_n = agent_rows[2 * j], agent_rows[2 * j + 1]
            if not h:
                continue
            agents.append(
                p.AgentState(
                    id=a,
                    name=h.get("name", a),
                    status=h.get("status", "offline")
                    if h.get("status") in ("online", "away")
                    else "offline",
                    open=int(open_n),
                    capacity=int(h.get("capacity", 3)),
                    languages=[x for x in h.get("langs", "").split(",") if x],
                )
            )
        return p.QueueSnapshot(queue=entries, agents=agents), updates
