"""Routing: assignment, queue positions, transfer, grace period, leave-a-message."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets

from server import protocol as p
from server import redisconn
from server.routing import estimate_wait_s
from server.store import now_ms, user_channel
from tests.server.support import (
    Client,
    agent,
    close_all,
    connect,
    make_account,
    open_chat,
    redis_pipeline,
    running,
    session_token,
    supervisor_http,
    visitor,
    visitor_token,
)


async def answered_by_marko_not_jelena(
    first: Client, second: Client, vi: Client, conv: str
) -> None:
    """After a hand-over from Jelena (``first``) to Marko (``second``): Marko's reply
    reaches the visitor, Jelena's is refused; then everyone leaves."""
    reply = await second.say("Hi, I have your refund here.", conversation=conv)
    assert (await vi.expect("message", id=reply["ref"]))["from"]["id"] == "marko"
    await first.send(type="message", id="old", text="still here?", conversation=conv)
    assert (await first.expect("error"))["code"] == "not_in_conversation"
    await close_all(first, second, vi)


@pytest.mark.parametrize(
    ("position", "avg", "online", "expected"),
    [
        (1, 180.0, 1, 180),
        (3, 180.0, 2, 270),
        (1, 10.0, 3, 4),
        (5, 60.0, 0, None),
    ],
)
def test_estimated_wait(position: int, avg: float, online: int, expected: int | None) -> None:
    assert estimate_wait_s(position, avg, online) == expected


async def test_new_conversation_goes_to_least_busy_agent_who_speaks_the_language(
    redis_db: str,
) -> None:
    async with running(redis_db) as srv:
        en = await agent(srv, redis_db, "enonly", languages=["en"])
        sr = await agent(srv, redis_db, "srbian", languages=["sr", "en"])
        v_sr = await visitor(srv, lang="sr")
        conv = (await v_sr.say("Zdravo"))["conversation"]
        await sr.expect("assignment", conversation=conv)
        v_en = await visitor(srv, lang="en")
        conv2 = (await v_en.say("Hello"))["conversation"]
        # srbian has one chat, enonly none: the English chat goes to enonly.
        await en.expect("assignment", conversation=conv2)
        await close_all(en, sr, v_sr, v_en)


async def test_queue_positions_then_assignment_when_an_agent_comes_online(redis_db: str) -> None:
    async with running(redis_db) as srv:
        visitors = [await visitor(srv) for _ in range(3)]
        convs = []
        for i, v in enumerate(visitors):
            convs.append((await v.say(f"waiting {i}"))["conversation"])
        for i, v in enumerate(visitors):
            q = await v.expect("queue", position=i + 1)
            assert q["agents_online"] == 0 and q["estimated_wait_s"] is None
        ag = await agent(srv, redis_db, "jelena", capacity=1)
        await ag.expect("assignment", conversation=convs[0])
        await visitors[0].expect("assigned")
        await visitors[1].expect("queue", position=1)
        q = await visitors[2].expect("queue", position=2)
        assert q["agents_online"] == 1 and q["estimated_wait_s"] == 360
        await ag.send(type="close", conversation=convs[0])
        await ag.expect("assignment", conversation=convs[1])
        await visitors[2].expect("queue", position=1)
        await close_all(*visitors, ag)


async def test_fifty_visitors_five_agents_no_double_assignment(redis_db: str) -> None:
    async with running(redis_db) as srv_a, running(redis_db) as srv_b:
        agents = [
            await agent(srv_a if i % 2 else srv_b, redis_db, f"agent{i}", capacity=4)
            for i in range(5)
        ]

        async def one(i: int) -> tuple[Client, str]:
            v = await visitor(srv_a if i % 2 else srv_b)
            return v, (await v.say(f"visitor {i}"))["conversation"]

        pairs = await asyncio.gather(*(one(i) for i in range(50)))
        convs = [c for _, c in pairs]
        assert len(set(convs)) == 50
        got: Counter[str] = Counter()
        by_agent: Counter[str] = Counter()
        for a in agents:
            for _ in range(4):
                frame = await a.expect("assignment", timeout=10)
                got[frame["conversation"]] += 1
                by_agent[a.welcome["user"]["id"]] += 1
        assert all(n == 1 for n in got.values()) and len(got) == 20
        assert set(by_agent.values()) == {4}
        extra = await asyncio.gather(*(a.quiet("assignment", within=0.3) for a in agents))
        assert all(x == [] for x in extra)
        queued = [c for c in convs if c not in got]
        conns = await redisconn.connect(redis_db)  # a cluster too (tests/faults/test_cluster.py)
        r = conns.commands
        assert await r.zcard("{tl}:queue") == 30
        assert set(await r.zrange("{tl}:queue", 0, -1)) == set(queued)
        assert len(await r.hgetall("{tl}:assign")) == 20
        await conns.aclose()
        await asyncio.sleep(0.3)

        async def position(v: Client) -> int:
            frames = [f for f in v.skipped if f["type"] == "queue"]
            frames += await v.quiet("queue", within=0.3)
            return int(frames[-1]["position"])

        waiting = [v for v, c in pairs if c in queued]
        positions = dict(
            zip(queued, await asyncio.gather(*(position(v) for v in waiting)), strict=True)
        )
        assert sorted(positions.values()) == list(range(1, 31))
        await close_all(*agents, *(v for v, _ in pairs))


async def test_transfer_to_agent_with_note(redis_db: str) -> None:
    async with running(redis_db) as srv:
        first = await agent(srv, redis_db, "jelena")
        vi, conv = await open_chat(srv, first, "I need a refund")
        second = await agent(srv, redis_db, "marko")
        await first.send(
            type="transfer",
            conversation=conv,
            to_agent="marko",
            note="Refund approved, needs the bank details.",
        )
        got = await second.expect("assignment", conversation=conv)
        assert got["reason"] == "transfer"
        assert got["note"] == "Refund approved, needs the bank details."
        assert got["from_agent"] == {"id": "jelena", "name": "Jelena"}
        assert "I need a refund" in [e.get("text") for e in got["events"]]
        told = await vi.expect("transferred")
        assert told["agent"] == {"id": "marko", "name": "Marko"}
        assert "note" not in told and "from_agent" not in told
        await answered_by_marko_not_jelena(first, second, vi, conv)


async def test_a_supervisor_who_takes_over_answers_from_the_console_and_keeps_the_chat(
    redis_db: str,
) -> None:
    async with running(redis_db) as srv:
        first = await agent(srv, redis_db, "jelena")
        vi, conv = await open_chat(srv, first, "Where is my parcel?")
        await make_account(redis_db, "sanja", role="supervisor")
        token = await session_token(srv.base, "sanja")
        review = await connect(srv.ws, "/ws/agent", token)  # the Live page
        console = await connect(srv.ws, "/ws/agent", token)  # the agent console
        assert console.welcome["conversations"] == []
        await review.send(type="watch", conversation=conv)
        await review.expect("watching", conversation=conv)
        await review.send(type="take_over", conversation=conv, note="I'll handle it")

        got = await console.expect("assignment", conversation=conv)
        assert (got["reason"], got["note"]) == ("transfer", "I'll handle it")
        assert got["from_agent"] == {"id": "jelena", "name": "Jelena"}
        assert "Where is my parcel?" in [e.get("text") for e in got["events"]]
        told = await vi.expect("transferred")
        assert told["agent"] == {"id": "sanja", "name": "Sanja"}
        # The previous agent is told, and may no longer act in the chat.
        moved = await first.expect("transferred", conversation=conv)
        assert moved["agent"]["id"] == "sanja" and moved["from_agent"]["id"] == "jelena"
        # A receipt its console sends as the chat goes is no error: it crossed the hand-over.
        await first.send(type="read", conversation=conv, seq=moved["seq"])
        assert await first.quiet("error") == []
        await first.send(type="message", id="old", text="still here?", conversation=conv)
        assert (await first.expect("error", ref="old"))["code"] == "not_in_conversation"

        reply = await console.say("Hi, I'm Sanja; I have your parcel here.", conversation=conv)
        said = await vi.expect("message", id=reply["ref"])
        assert said["from"] == {"role": "supervisor", "id": "sanja", "name": "Sanja"}
        await vi.say("Thank you!")
        heard = await console.expect("message", conversation=conv, text="Thank you!")
        assert heard["from"]["role"] == "visitor"

        # After a reload the chat is still the supervisor's, and the agent's no longer.
        await console.close()
        console = await connect(srv.ws, "/ws/agent", token)
        assert [c["conversation"] for c in console.welcome["conversations"]] == [conv]
        await first.close()
        first = await agent(srv, redis_db, "jelena", create=False, online=False)
        assert first.welcome["conversations"] == []
        async with httpx.AsyncClient(timeout=5) as http:
            agents = (
                await http.get(
                    srv.base + "/api/conversations",
                    params={"agent": "sanja"},
                    headers={"Authorization": f"Bearer {token}"},
                )
            ).json()
        assert [c["conversation"] for c in agents["items"]] == [conv]

        # Closing it frees it: the next reload lists nothing.
        await console.send(type="close", conversation=conv)
        await vi.expect("closed")
        await console.close()
        console = await connect(srv.ws, "/ws/agent", token)
        assert console.welcome["conversations"] == []
        await close_all(first, review, console, vi)


async def test_transfer_to_team_queues_at_front_for_that_team(redis_db: str) -> None:
    async with running(redis_db) as srv:
        first = await agent(srv, redis_db, "jelena", teams=["support"])
        vi, conv = await open_chat(srv, first, "invoice question")
        await make_account(redis_db, "bob", teams=["billing"])
        await first.send(type="transfer", conversation=conv, to_team="billing", note="Invoice 7")
        told = await vi.expect("transferred")
        assert told["agent"] is None
        assert (await first.quiet("assignment")) == []
        billing = await agent(srv, redis_db, "bob", teams=["billing"], create=False)
        got = await billing.expect("assignment", conversation=conv)
        assert (got["reason"], got["note"]) == ("transfer", "Invoice 7")
        await close_all(first, billing, vi)


async def test_transfer_to_a_team_nobody_is_in_is_refused_and_the_chat_stays(
    redis_db: str,
) -> None:
    async with running(redis_db) as srv:
        first = await agent(srv, redis_db, "jelena", teams=["support"])
        vi, conv = await open_chat(srv, first, "invoice question")
        await make_account(redis_db, "bob", teams=["billing"])
        await first.send(type="transfer", conversation=conv, to_team="biling", id="t1")
        err = await first.expect("error")
        assert (err["code"], err["ref"]) == ("unknown_team", "t1")
        assert err["message"] == "no team 'biling'; teams: billing, support"
        assert (await vi.quiet("transferred")) == []
        await first.say("Still with you.", conversation=conv)
        await vi.expect("message", text="Still with you.")
        await close_all(first, vi)


async def test_transfer_to_own_team_goes_to_someone_else_in_it(redis_db: str) -> None:
    async with running(redis_db) as srv:
        jelena = await agent(srv, redis_db, "jelena", teams=["support"])
        vi, conv = await open_chat(srv, jelena, "Can someone else look at this?")
        await jelena.send(type="transfer", conversation=conv, to_team="support", note="2nd look")
        await vi.expect("transferred")
        # Jelena has room and is in the team, but handed it on: it waits for someone else.
        assert await jelena.quiet("assignment", within=1.0) == []
        marko = await agent(srv, redis_db, "marko", teams=["support"])
        got = await marko.expect("assignment", conversation=conv)
        assert got["note"] == "2nd look"
        # Passed on once: later hand-backs to the queue may reach Jelena again.
        await marko.send(type="transfer", conversation=conv, to_team="support")
        await jelena.expect("assignment", conversation=conv)
        await close_all(jelena, marko, vi)


async def test_agent_keeps_chats_for_grace_period_then_they_requeue(redis_db: str) -> None:
    async with running(redis_db, grace_period_s=1.0) as srv:
        ag = await agent(srv, redis_db, "jelena")
        vi = await visitor(srv)
        conv = (await vi.say("hello"))["conversation"]
        got = await ag.expect("assignment", conversation=conv)
        last = got["events"][-1]["seq"]
        await ag.close()
        # Back within the grace period: the chat is still ours, resumed by cursor.
        await asyncio.sleep(0.3)
        ag = await agent(srv, redis_db, "jelena", create=False, online=False, resume={conv: last})
        assert [v["conversation"] for v in ag.welcome["conversations"]] == [conv]
        await ag.close()
        # Away for longer: the chat goes back to the front of the queue, to the next agent.
        other = await agent(srv, redis_db, "marko", capacity=1)
        requeued = await other.expect("assignment", conversation=conv, timeout=6)
        assert requeued["reason"] == "requeue"
        told = await vi.expect("transferred", timeout=5)
        assert told["agent"] is None
        await vi.expect("assigned")
        await close_all(other, vi)


async def snapshot_where(
    ag: Client, test: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    """The first ``queue_snapshot`` the agent gets (or got) that passes ``test``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        snapshot = await ag.expect("queue_snapshot", timeout=max(0.01, deadline - loop.time()))
        if test(snapshot):
            return snapshot


def waiting(snapshot: dict[str, Any], conv: str) -> dict[str, Any] | None:
    """The conversation's entry in a queue snapshot, or None."""
    return next((q for q in snapshot["queue"] if q["conversation"] == conv), None)


async def leave_message(vi: Client, text: str, msg_id: str = "lm1") -> dict[str, Any]:
    """Leave a message as Ana and return its ack."""
    await vi.send(type="leave_message", id=msg_id, name="Ana", email="ana@example.com", text=text)
    answer = await vi.expect("ack", "error", ref=msg_id)
    assert answer["type"] == "ack", answer
    return answer


async def frames_of(client: Client, *types: str) -> list[dict[str, Any]]:
    """Frames of ``types`` the client got so far or gets within a moment (expected: none)."""
    kept = [f for f in client.skipped if f["type"] in types]
    return kept + await client.quiet(*types)


async def both_accept(a1: Client, a2: Client, conv: str) -> list[str]:
    """Two agents accept the same chat at once; what each is told (reason or error code)."""
    await asyncio.gather(
        a1.send(type="accept", conversation=conv), a2.send(type="accept", conversation=conv)
    )
    outcomes = []
    for a in (a1, a2):
        frame = await a.expect("assignment", "error")
        outcomes.append(frame.get("reason") or frame.get("code"))
    return outcomes


async def test_a_left_message_waits_in_the_queue_until_an_agent_accepts_it(
    redis_db: str,
) -> None:
    async with running(redis_db) as srv:
        vi = await visitor(srv)
        assert vi.welcome["agents_online"] == 0
        conv = (await leave_message(vi, "Please call me back about order 1182."))["conversation"]
        # The visitor cannot end it: they were promised an answer by email.
        await vi.send(type="close", id="end", conversation=conv)
        refused = await vi.expect("error", ref="end")
        assert refused["code"] == "forbidden" and "email" in refused["message"]
        ag = await agent(srv, redis_db, "jelena", online=False)
        await ag.send(type="status", status="online", capacity=1)
        # An offline request: listed for the agent, not handed to them as a live chat.
        snapshot = await snapshot_where(ag, lambda s: waiting(s, conv) is not None)
        entry = waiting(snapshot, conv)
        assert entry is not None and entry["left_message"] is True
        assert entry["preview"] == "Please call me back about order 1182."
        assert await ag.quiet("assignment", within=1.0) == []
        # The visitor is neither put in a line nor told a chat started.
        assert await frames_of(vi, "queue", "assigned") == []
        # It takes none of the agent's seats: the next live visitor is routed to her.
        live = await visitor(srv)
        live_conv = (await live.say("Is anyone there?"))["conversation"]
        await ag.expect("assignment", conversation=live_conv)
        await live.expect("assigned")
        await ag.send(type="close", conversation=live_conv)
        await live.expect("closed")
        # Taken with accept, it is the agent's like any chat.
        await ag.send(type="accept", conversation=conv)
        got = await ag.expect("assignment", conversation=conv)
        assert got["reason"] == "accepted"
        [msg] = [e for e in got["events"] if e["type"] == "message"]
        assert msg["contact"] == {"name": "Ana", "email": "ana@example.com"}
        picked = await vi.expect("assigned")
        assert picked["agent"] == {"id": "jelena", "name": "Jelena"}
        assert picked["left_message"] is True
        reply = await ag.say("Hello Ana, I am calling you now.", conversation=conv)
        await vi.expect("message", id=reply["ref"])
        await close_all(ag, vi, live)


async def test_accept_takes_a_left_message_once(redis_db: str) -> None:
    async with running(redis_db) as srv_a, running(redis_db) as srv_b:
        vi = await visitor(srv_a)
        conv = (await leave_message(vi, "Call me back, please."))["conversation"]
        a1 = await agent(srv_a, redis_db, "jelena")
        a2 = await agent(srv_b, redis_db, "marko")
        outcomes = await both_accept(a1, a2, conv)
        assert sorted(outcomes) == ["accepted", "not_queued"]
        assert (await vi.expect("assigned"))["left_message"] is True
        assert await vi.quiet("assigned") == []
        await close_all(a1, a2, vi)


async def test_a_left_message_does_not_count_as_ahead_of_live_visitors(redis_db: str) -> None:
    async with running(redis_db) as srv:
        left = await visitor(srv)
        await leave_message(left, "Call me back, please.")
        vi = await visitor(srv)
        conv = (await vi.say("Hello?"))["conversation"]
        assert (await vi.expect("queue", conversation=conv))["position"] == 1
        await close_all(left, vi)


async def test_agents_online_counts_only_agents_who_speak_the_visitors_language(
    redis_db: str,
) -> None:
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "jelena", languages=["en", "sr"])
        serbian = await visitor(srv, lang="sr")
        assert serbian.welcome["agents_online"] == 1
        slovenian = await visitor(srv, lang="sl")
        assert slovenian.welcome["agents_online"] == 0
        # So the widget offers to leave a message, and the server takes it.
        conv = (await leave_message(slovenian, "Pokličite me, prosim."))["conversation"]
        await snapshot_where(ag, lambda s: (waiting(s, conv) or {}).get("left_message") is True)
        assert await ag.quiet("assignment", within=0.5) == []
        # Where an agent speaks the language, a message is a chat: send `message`.
        await serbian.send(
            type="leave_message", id="lm2", name="Ana", email="ana@example.com", text="Zdravo"
        )
        assert (await serbian.expect("error", ref="lm2"))["code"] == "agents_online"
        await close_all(ag, serbian, slovenian)


async def test_agents_online_follows_the_languages_and_status_an_agent_sets(
    redis_db: str,
) -> None:
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "marko", languages=["en", "sl"])

        async def seen_by_a_slovenian() -> int:
            vi = await visitor(srv, lang="sl")
            await vi.close()
            return int(vi.welcome["agents_online"])

        assert await seen_by_a_slovenian() == 1
        await ag.send(type="status", status="online", languages=["en"])
        await ag.expect("queue_snapshot")
        assert await seen_by_a_slovenian() == 0
        await ag.send(type="status", status="online", languages=["sl"])
        await ag.expect("queue_snapshot")
        assert await seen_by_a_slovenian() == 1
        await ag.send(type="status", status="away")
        await ag.expect("queue_snapshot")
        assert await seen_by_a_slovenian() == 0
        await ag.close()


async def test_a_visitor_nobody_online_speaks_to_is_given_no_wait_then_routed_when_one_comes(
    redis_db: str,
) -> None:
    async with running(redis_db) as srv:
        jelena = await agent(srv, redis_db, "jelena", languages=["en", "sr"])
        vi = await visitor(srv, lang="sl")
        conv = (await vi.say("Pozdravljeni"))["conversation"]
        q = await vi.expect("queue", conversation=conv)
        assert (q["agents_online"], q["estimated_wait_s"]) == (0, None)
        # A Slovenian speaker comes online while the visitor waits: routing as usual.
        marko = await agent(srv, redis_db, "marko", languages=["en", "sl"])
        got = await marko.expect("assignment", conversation=conv)
        assert got["reason"] == "new"
        assigned = await vi.expect("assigned")
        assert assigned["agent"]["id"] == "marko" and assigned["left_message"] is False
        assert await jelena.quiet("assignment") == []
        await close_all(jelena, marko, vi)


async def test_a_waiting_visitor_may_leave_a_message_instead(redis_db: str) -> None:
    async with running(redis_db) as srv:
        jelena = await agent(srv, redis_db, "jelena", languages=["en", "sr"])
        vi = await visitor(srv, lang="sl")
        conv = (await vi.say("Pozdravljeni"))["conversation"]
        await vi.expect("queue", conversation=conv)
        ack = await leave_message(vi, "Pokličite me, prosim.")
        assert ack["conversation"] == conv
        await snapshot_where(jelena, lambda s: (waiting(s, conv) or {}).get("left_message") is True)
        # No longer a place in line; a Slovenian speaker coming online is not handed it.
        await vi.quiet("queue")  # places in line told before the message was left
        vi.skipped.clear()
        marko = await agent(srv, redis_db, "marko", languages=["en", "sl"])
        assert await marko.quiet("assignment", within=1.0) == []
        assert await vi.quiet("queue", "assigned") == []
        await marko.send(type="accept", conversation=conv)
        got = await marko.expect("assignment", conversation=conv)
        texts = [e["text"] for e in got["events"] if e["type"] == "message"]
        assert texts == ["Pozdravljeni", "Pokličite me, prosim."]
        await close_all(jelena, marko, vi)


async def test_a_left_message_an_agent_hands_back_waits_to_be_accepted_again(
    redis_db: str,
) -> None:
    async with running(redis_db) as srv:
        vi = await visitor(srv)
        conv = (await leave_message(vi, "Call me back, please."))["conversation"]
        jelena = await agent(srv, redis_db, "jelena")
        await jelena.send(type="accept", conversation=conv)
        await jelena.expect("assignment", conversation=conv)
        await jelena.send(type="status", status="offline")
        told = await vi.expect("transferred")
        assert told["agent"] is None
        marko = await agent(srv, redis_db, "marko", online=False)
        await marko.send(type="status", status="online")
        snapshot = await snapshot_where(marko, lambda s: waiting(s, conv) is not None)
        assert (waiting(snapshot, conv) or {}).get("left_message") is True
        assert await marko.quiet("assignment", within=1.0) == []
        await close_all(jelena, marko, vi)


@pytest.mark.parametrize("leaves", ["offline", "grace_period"])
@pytest.mark.parametrize("began_as", ["chat", "left_message"])
async def test_a_live_chat_whose_agent_left_is_routed_as_a_live_chat_again(
    redis_db: str, began_as: str, leaves: str
) -> None:
    async with running(redis_db, grace_period_s=0.5) as srv:
        observer = await agent(srv, redis_db, "jelena", languages=["sr"])
        vi = await visitor(srv)
        if began_as == "chat":
            marko = await agent(srv, redis_db, "marko")
            conv = (await vi.say("Hello, is my order on its way?"))["conversation"]
            await marko.expect("assignment", conversation=conv)
        else:  # left while nobody was online, taken with accept, then chatted live
            conv = (await leave_message(vi, "Please call me back about order 1182."))[
                "conversation"
            ]
            marko = await agent(srv, redis_db, "marko")
            await marko.send(type="accept", conversation=conv)
            await marko.expect("assignment", conversation=conv)
        await vi.expect("assigned")
        reply = await marko.say("Hello, I'm here now.", conversation=conv)
        await vi.expect("message", id=reply["ref"])
        await vi.say("Great, thanks. Where is my parcel?")
        if leaves == "offline":
            await marko.send(type="status", status="offline")
        else:
            await marko.close()
        assert (await vi.expect("transferred", timeout=5))["agent"] is None
        # Back in line to chat: the visitor is told their place, as any waiting visitor.
        q = await vi.expect("queue", conversation=conv, timeout=5)
        assert (q["position"], q["agents_online"]) == (1, 0)
        # Listed as a visitor waiting to chat (an older snapshot may list the left message).
        await snapshot_where(
            observer, lambda s: (waiting(s, conv) or {}).get("left_message") is False
        )
        # And routed like any live chat once an agent is online again.
        if leaves == "grace_period":
            marko = await agent(srv, redis_db, "marko", create=False, online=False)
        await marko.send(type="status", status="online")
        got = await marko.expect("assignment", conversation=conv)
        assert got["reason"] == "requeue"
        assert (await vi.expect("assigned"))["left_message"] is False
        await close_all(marko, observer, vi)


async def test_visitor_cannot_reach_another_visitors_conversation(redis_db: str) -> None:
    async with running(redis_db) as srv:
        alice = await visitor(srv)
        conv = (await alice.say("my secret order"))["conversation"]
        mallory_token = await visitor_token(srv.base)
        mallory = await connect(srv.ws, "/ws/visitor", mallory_token, resume={conv: "0-0"})
        assert mallory.welcome["conversations"] == []
        await mallory.send(type="message", id="x", text="hi", conversation=conv)
        assert (await mallory.expect("error"))["code"] == "not_in_conversation"
        await mallory.send(type="read", seq="1-0", conversation=conv)
        assert (await mallory.expect("error"))["code"] == "not_in_conversation"
        assert await mallory.quiet("message") == []
        await close_all(alice, mallory)


async def test_accept_takes_a_queued_conversation_once(redis_db: str) -> None:
    async with running(redis_db) as srv:
        a1 = await agent(srv, redis_db, "jelena", languages=["en"])
        a2 = await agent(srv, redis_db, "marko", languages=["en"])
        vi = await visitor(srv, lang="sl")  # nobody speaks it: stays queued
        conv = (await vi.say("Pozdravljeni"))["conversation"]
        await vi.expect("queue", position=1)
        outcomes = await both_accept(a1, a2, conv)
        assert sorted(outcomes) == ["accepted", "not_queued"]
        await vi.expect("assigned")
        await close_all(a1, a2, vi)


async def test_an_assignment_a_dead_process_never_announced_is_announced(
    redis_db: str,
) -> None:
    # The routing script assigned the chat, then its process died before the
    # `assigned` event: without repair the visitor would wait for ever.
    async with running(redis_db, repair_interval_s=0.3, repair_after_s=0.5) as srv:
        vi = await visitor(srv)
        conv = (await vi.say("is anyone there?"))["conversation"]
        await vi.expect("queue", position=1)
        ag = await agent(srv, redis_db, "jelena", online=False)
        async with redis_pipeline(redis_db) as pipe:  # what the routing script writes
            pipe.zrem("{tl}:queue", conv)
            pipe.hdel("{tl}:qlang", conv)
            pipe.hset("{tl}:assign", conv, "jelena")
            pipe.sadd("{tl}:aconvs:jelena", conv)
            pipe.zadd("{tl}:ahist:jelena", {conv: now_ms()})
        assigned = await vi.expect("assigned", timeout=10)
        assert assigned["agent"]["name"] == "Jelena"
        await ag.expect("assignment", conversation=conv, timeout=10)
        assert await vi.quiet("assigned", within=1.5) == []  # announced once
        await vi.say("thanks")
        await ag.expect("message", conversation=conv)
        await close_all(vi, ag)


async def test_a_transfer_a_dead_process_never_announced_is_announced_as_a_transfer(
    redis_db: str,
) -> None:
    # The transfer script moved the chat to Marko, then its process died before
    # the `transferred` event: the visitor is told of a hand-over, not a first agent.
    async with running(redis_db, repair_interval_s=0.3, repair_after_s=0.5) as srv:
        first = await agent(srv, redis_db, "jelena")
        vi, conv = await open_chat(srv, first, "I need a refund")
        await vi.expect("assigned")
        second = await agent(srv, redis_db, "marko")
        async with redis_pipeline(redis_db) as pipe:  # what the transfer script writes
            pipe.srem("{tl}:aconvs:jelena", conv)
            pipe.hset("{tl}:assign", conv, "marko")
            pipe.sadd("{tl}:aconvs:marko", conv)
            pipe.zadd("{tl}:ahist:marko", {conv: now_ms()})
        told = await vi.expect("transferred", "assigned", timeout=10)
        assert told["type"] == "transferred"
        assert told["agent"] == {"id": "marko", "name": "Marko"}
        assert "note" not in told and "from_agent" not in told
        got = await second.expect("assignment", conversation=conv, timeout=10)
        assert got["reason"] == "transfer"
        assert got["from_agent"] == {"id": "jelena", "name": "Jelena"}
        assert await vi.quiet("transferred", "assigned", within=1.5) == []  # announced once
        await answered_by_marko_not_jelena(first, second, vi, conv)


async def test_a_second_notice_for_a_chat_the_agent_has_repeats_no_message(
    redis_db: str,
) -> None:
    # A process too slow to announce in time and the repair job both announce the
    # same assignment: the agent is told again but shown no message twice.
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "jelena")
        vi = await visitor(srv)
        first = await vi.say("My parcel is late")
        conv = first["conversation"]
        got = await ag.expect("assignment", conversation=conv)
        assert [e["id"] for e in got["events"] if e["type"] == "message"] == [first["ref"]]
        second = await vi.say("It was due on Monday")
        await ag.expect("message", id=second["ref"])
        conns = await redisconn.connect(redis_db)
        notice = {"kind": "assignment", "conversation": conv, "reason": "new"}
        await conns.commands.publish(user_channel("agent", "jelena"), json.dumps(notice))
        await conns.aclose()
        again = await ag.expect("assignment", conversation=conv)
        assert again["events"] == []
        assert await ag.quiet("message", within=0.5) == []
        third = await vi.say("Any news?")
        assert (await ag.expect("message", id=third["ref"]))["text"] == "Any news?"
        assert await ag.quiet("message", within=0.5) == []
        reply = await ag.say("It leaves today.", conversation=conv)
        assert (await vi.expect("message", id=reply["ref"]))["text"] == "It leaves today."
        await close_all(ag, vi)


async def test_a_transfer_to_a_team_that_never_reached_the_queue_is_queued(
    redis_db: str,
) -> None:
    # The `transferred` event was stored, then the process died before the chat
    # was queued: the routing keys still give it to Jelena, who handed it on.
    async with running(redis_db, repair_interval_s=0.3, repair_after_s=0.5) as srv:
        first = await agent(srv, redis_db, "jelena", teams=["support"])
        vi, conv = await open_chat(srv, first, "invoice question")
        await vi.expect("assigned")
        billing = await agent(srv, redis_db, "bob", teams=["billing"])
        event = p.dump(
            p.TransferredEvent(
                conversation=conv,
                ts=now_ms(),
                from_agent=p.AgentRef(id="jelena", name="Jelena"),
                team="billing",
                note="Invoice 7",
            )
        )
        event.pop("seq")
        await srv.app.state.relay.store.append(  # what the transfer stores first
            conv,
            event,
            actor="open",
            state=[
                ("status", "queued"),
                ("agent", ""),
                ("next_reason", "transfer"),
                ("handoff_note", "Invoice 7"),
                ("handoff_from", "jelena"),
            ],
        )
        assert (await vi.expect("transferred"))["agent"] is None
        got = await billing.expect("assignment", conversation=conv, timeout=10)
        assert (got["reason"], got["note"]) == ("transfer", "Invoice 7")
        assigned = await vi.expect("assigned", timeout=5)
        assert assigned["agent"] == {"id": "bob", "name": "Bob"}
        assert await first.quiet("assignment", within=1.0) == []
        await close_all(first, billing, vi)


async def test_a_hand_off_to_the_queue_under_way_is_left_to_its_process(
    redis_db: str,
) -> None:
    # Jelena has had the chat for a minute; her process has just stored the team
    # transfer and is about to queue it. Repair must not queue it as well: queued
    # twice, the chat would be taken back from whoever got it in between.
    async with running(redis_db, repair_interval_s=3600) as srv:
        first = await agent(srv, redis_db, "jelena", teams=["support"])
        vi, conv = await open_chat(srv, first, "invoice question")
        await vi.expect("assigned")
        relay = srv.app.state.relay
        await relay.redis.zadd("{tl}:ahist:jelena", {conv: now_ms() - 60_000})
        event = p.dump(
            p.TransferredEvent(
                conversation=conv,
                ts=now_ms(),
                from_agent=p.AgentRef(id="jelena", name="Jelena"),
                team="billing",
            )
        )
        event.pop("seq")
        await relay.store.append(
            conv,
            event,
            actor="open",
            state=[("status", "queued"), ("agent", ""), ("next_reason", "transfer")],
        )
        await relay.router.repair(30_000)
        assert await relay.redis.zscore("{tl}:queue", conv) is None
        assert await relay.redis.hget("{tl}:assign", conv) == "jelena"
        # Older than that, the hand-off is a dead process's: the chat is queued.
        await relay.router.repair(0)
        assert await relay.redis.zscore("{tl}:queue", conv) is not None
        assert await relay.redis.hget("{tl}:assign", conv) is None
        await close_all(first, vi)


async def test_an_assignment_made_while_hello_is_answered_comes_after_welcome(
    redis_db: str,
) -> None:
    async with running(redis_db) as srv:
        await make_account(redis_db, "ada")
        vi = await visitor(srv)
        ack = await vi.say("Hello, is anyone there?")
        conv = ack["conversation"]
        store = srv.app.state.relay.store
        counted = store.online_count

        async def online_count_while_assigned() -> int:
            # Ada's other tab gets this chat while her new tab is being welcomed.
            notice = {"kind": "assignment", "conversation": conv, "reason": "new"}
            await store.r.publish(user_channel("agent", "ada"), json.dumps(notice))
            await asyncio.sleep(0.3)  # the notice is read meanwhile
            return await counted()

        store.online_count = online_count_while_assigned
        try:
            ws = await websockets.connect(srv.ws + "/ws/agent", open_timeout=5)
            await ws.send(json.dumps(
                {"v": 1, "type": "hello", "token": await session_token(srv.base, "ada")}))
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
            second = json.loads(await asyncio.wait_for(ws.recv(), 5))
        finally:
            store.online_count = counted
        assert first["type"] == "welcome", first
        assert second["type"] == "assignment" and second["conversation"] == conv, second
        assert [e["text"] for e in second["events"] if e["type"] == "message"] == [
            "Hello, is anyone there?"]
        await ws.close()
        await vi.close()


async def test_an_agent_is_welcomed_with_the_status_and_capacity_the_server_holds(
    redis_db: str,
) -> None:
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "jelena", online=False)
        assert ag.welcome["settings"] == {"status": "offline", "capacity": 3}
        await ag.send(type="status", status="offline", capacity=5)
        await snapshot_where(ag, lambda s: True)
        again = await agent(srv, redis_db, "jelena", create=False, online=False)
        assert again.welcome["settings"] == {"status": "offline", "capacity": 5}
        vi = await visitor(srv)
        assert vi.welcome["settings"] is None
        await close_all(ag, again, vi)


async def test_the_chat_of_a_visitor_who_is_gone_is_closed_and_frees_the_agent(
    redis_db: str,
) -> None:
    async with running(redis_db, visitor_gone_close_s=4.0) as srv:
        ag = await agent(srv, redis_db, "jelena", capacity=2)
        stays = await visitor(srv)
        stays_conv = (await stays.say("I'm still reading."))["conversation"]
        await ag.expect("assignment", conversation=stays_conv)
        gone = await visitor(srv)
        gone_conv = (await gone.say("Hello?"))["conversation"]
        await ag.expect("assignment", conversation=gone_conv)
        # Nobody online speaks Slovenian: a message left for an agent, answered by email.
        left = await visitor(srv, lang="sl")
        left_conv = (await leave_message(left, "Pokličite me, prosim."))["conversation"]
        await close_all(gone, left)
        closed = await ag.expect("closed", conversation=gone_conv, timeout=15)
        assert closed["reason"] == "timeout" and closed["by"]["role"] == "system"
        # Her seat is free again: the next visitor is hers at once.
        nxt = await visitor(srv)
        nxt_conv = (await nxt.say("Hi there"))["conversation"]
        await ag.expect("assignment", conversation=nxt_conv)
        # The visitor still connected keeps their chat, and the left message waits.
        assert [f for f in await ag.quiet("closed", within=5.0)] == []
        async with await supervisor_http(srv, redis_db) as sup:
            listed = (await sup.get("/api/conversations", params={"limit": 10})).json()["items"]
            status = {c["conversation"]: c["status"] for c in listed}
        assert status[stays_conv] == "assigned" and status[left_conv] == "queued"
        assert status[gone_conv] == "closed"
        await close_all(ag, stays, nxt)


async def test_a_supervisor_hands_a_chat_back_to_its_agent_whose_seat_was_refilled(
    redis_db: str,
) -> None:
    async with running(redis_db) as srv:
        jelena = await agent(srv, redis_db, "jelena", capacity=1)
        vi, conv = await open_chat(srv, jelena, "My refund is late.")
        await make_account(redis_db, "sanja", role="supervisor")
        boss = await connect(srv.ws, "/ws/agent", await session_token(srv.base, "sanja"))
        await boss.send(type="take_over", conversation=conv)
        await boss.expect("assignment", conversation=conv)
        # Her seat is free: the next visitor in line gets it at once.
        nxt, nxt_conv = await open_chat(srv, jelena, "Hello?")
        await boss.send(type="transfer", id="back", conversation=conv, to_agent="jelena")
        assert (await jelena.expect("assignment", conversation=conv))["reason"] == "transfer"
        assert [f for f in await boss.quiet("error") if f.get("ref") == "back"] == []
        # An agent may not hand a chat to a full colleague, though.
        marko = await agent(srv, redis_db, "marko")
        third, third_conv = await open_chat(srv, marko, "Anyone?")
        await marko.send(type="transfer", id="full", conversation=third_conv, to_agent="jelena")
        assert (await marko.expect("error", ref="full"))["code"] == "agent_unavailable"
        await close_all(jelena, vi, boss, nxt, marko, third)
