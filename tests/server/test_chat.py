"""A whole chat, history, resume and idempotency, against a real server and Redis."""

from __future__ import annotations

import asyncio

import httpx

from tests.server.support import (
    agent,
    close_all,
    connect,
    running,
    session_token,
    visitor,
    visitor_token,
)


async def test_whole_chat_between_visitor_and_agent(redis_db: str) -> None:
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "jelena")
        vi = await visitor(srv)
        assert vi.welcome["conversations"] == []
        assert vi.welcome["agents_online"] == 1
        ack = await vi.say("Hello, my order has not arrived.")
        conv = ack["conversation"]
        assignment = await ag.expect("assignment", conversation=conv)
        assert assignment["reason"] == "new"
        assert [e["text"] for e in assignment["events"] if e["type"] == "message"] == [
            "Hello, my order has not arrived."
        ]
        assigned = await vi.expect("assigned")
        assert assigned["agent"] == {"id": "jelena", "name": "Jelena"}
        reply = await ag.say("I will check that for you right now.", conversation=conv)
        got = await vi.expect("message", id=reply["ref"])
        assert got["text"] == "I will check that for you right now."
        assert got["from"]["role"] == "agent" and got["seq"] == reply["seq"]
        await vi.send(type="typing", active=True)
        typing = await ag.expect("typing")
        assert typing["from"]["role"] == "visitor" and typing["conversation"] == conv
        await vi.send(type="read", seq=got["seq"])
        read = await ag.expect("read")
        assert read["up_to"] == got["seq"]
        await ag.send(type="close", conversation=conv)
        closed = await vi.expect("closed")
        assert closed["by"]["role"] == "agent"
        await vi.close()
        await ag.close()


async def test_history_after_reconnect(redis_db: str) -> None:
    async with running(redis_db) as srv:
        token = await visitor_token(srv.base)
        vi = await connect(srv.ws, "/ws/visitor", token)
        first = await vi.say("one")
        await vi.say("two")
        await vi.close()
        again = await connect(srv.ws, "/ws/visitor", token)
        [view] = again.welcome["conversations"]
        assert view["conversation"] == first["conversation"]
        assert [e["text"] for e in view["events"] if e["type"] == "message"] == ["one", "two"]
        await again.close()


async def test_resume_replays_exactly_the_missed_events(redis_db: str) -> None:
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "marko")
        token = await visitor_token(srv.base)
        vi = await connect(srv.ws, "/ws/visitor", token)
        ack = await vi.say("first")
        conv = ack["conversation"]
        await ag.expect("assignment", conversation=conv)
        seen = await vi.expect("message", id=ack["ref"])
        await vi.close()
        missed = [await ag.say(f"missed {i}", conversation=conv) for i in range(5)]
        vi2 = await connect(srv.ws, "/ws/visitor", token, resume={conv: seen["seq"]})
        [view] = vi2.welcome["conversations"]
        texts = [e["text"] for e in view["events"] if e["type"] == "message"]
        assert texts == [f"missed {i}" for i in range(5)]
        assert [e["seq"] for e in view["events"] if e["type"] == "message"] == [
            m["seq"] for m in missed
        ]
        seqs = [e["seq"] for e in view["events"]]
        assert len(seqs) == len(set(seqs)) and seen["seq"] not in seqs
        live = await ag.say("live after resume", conversation=conv)
        got = await vi2.expect("message")
        assert got["seq"] == live["seq"]
        assert await vi2.quiet("message") == []
        await vi2.close()
        await ag.close()


async def test_resent_client_id_is_stored_once_and_acked_again(redis_db: str) -> None:
    async with running(redis_db) as srv:
        vi = await visitor(srv)
        first = await vi.say("hello", msg_id="same-id")
        again = await vi.say("hello", msg_id="same-id")
        assert again["seq"] == first["seq"]
        assert (first["duplicate"], again["duplicate"]) == (False, True)
        events = [f for f in vi.skipped if f["type"] == "message"] + await vi.quiet("message")
        assert [e["id"] for e in events] == ["same-id"]
        await vi.close()


async def test_events_of_a_conversation_are_in_total_order(redis_db: str) -> None:
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "ana")
        vi = await visitor(srv)
        start = await vi.say("start")
        conv = start["conversation"]
        await ag.expect("assignment", conversation=conv)
        await vi.expect("message", id=start["ref"])

        async def burst(client, prefix, n, conversation=None):  # type: ignore[no-untyped-def]
            for i in range(n):
                await client.send(
                    type="message",
                    id=f"{prefix}{i}",
                    text=f"{prefix} {i}",
                    **({"conversation": conversation} if conversation else {}),
                )

        await asyncio.gather(burst(vi, "v", 15), burst(ag, "a", 15, conv))
        got_v, got_a = [], []
        while len(got_v) < 30:
            got_v.append((await vi.expect("message"))["seq"])
        while len(got_a) < 30:
            got_a.append((await ag.expect("message"))["seq"])
        assert got_v == got_a
        key = [tuple(int(x) for x in s.split("-")) for s in got_v]
        assert key == sorted(key) and len(set(got_v)) == 30
        await vi.close()
        await ag.close()


async def test_a_visitor_without_a_chat_hears_when_agents_for_their_language_come_and_go(
    redis_db: str,
) -> None:
    async with running(redis_db) as srv:
        english = await agent(srv, redis_db, "marko", languages=["en"])
        vi = await visitor(srv, lang="sl")
        assert vi.welcome["agents_online"] == 0  # the widget offers to leave a message
        # Another language's agent changes nothing for this visitor.
        await english.send(type="status", status="away")
        assert await vi.quiet("agents", within=0.5) == []
        slovenian = await agent(srv, redis_db, "ana", languages=["en", "sl"])
        assert (await vi.expect("agents", timeout=5))["agents_online"] == 1
        await slovenian.send(type="status", status="away")
        assert (await vi.expect("agents", timeout=5))["agents_online"] == 0
        await slovenian.send(type="status", status="online")
        assert (await vi.expect("agents", timeout=5))["agents_online"] == 1
        # In a chat, the visitor is told about their chat instead.
        conv = (await vi.say("Pozdravljeni"))["conversation"]
        await slovenian.expect("assignment", conversation=conv)
        await slovenian.send(type="status", status="away")
        assert await vi.quiet("agents", within=0.5) == []
        for c in (vi, english, slovenian):
            await c.close()


async def test_a_read_receipt_from_two_tabs_is_stored_and_shown_once(redis_db: str) -> None:
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "jelena")
        vi = await visitor(srv)
        ack = await vi.say("Is anyone there?")
        conv, seq = ack["conversation"], ack["seq"]
        await ag.expect("assignment", conversation=conv)
        token = await session_token(srv.base, "jelena")
        second_tab = await connect(srv.ws, "/ws/agent", token)
        assert conv in [c["conversation"] for c in second_tab.welcome["conversations"]]
        for tab in (ag, second_tab):
            await tab.send(type="read", conversation=conv, seq=seq)
        assert (await vi.expect("read"))["up_to"] == seq
        # A later receipt still goes through, and is the next receipt the visitor sees.
        reply = await ag.say("Yes, I'm here.", conversation=conv)
        await vi.expect("message", id=reply["ref"])
        await second_tab.send(type="read", conversation=conv, seq=reply["seq"])
        assert (await vi.expect("read"))["up_to"] == reply["seq"]
        async with httpx.AsyncClient(base_url=srv.base, timeout=5) as http:
            r = await http.get(
                f"/api/conversations/{conv}", headers={"Authorization": f"Bearer {token}"}
            )
        reads = [e["up_to"] for e in r.json()["events"] if e["type"] == "read"]
        assert reads == [seq, reply["seq"]]
        await close_all(vi, ag, second_tab)
