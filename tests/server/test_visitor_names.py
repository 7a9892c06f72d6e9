"""Visitors who gave no name are told apart by a label from their id, the same everywhere."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from server import redisconn
from server.store import conv_key, visitor_name
from tests.server.support import agent, make_account, running, session_token, visitor

LABEL = re.compile(r"^Visitor [0-9A-F]{4}$")


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("Ana Kovač", "Ana Kovač"),
        ("Visitor Smith", "Visitor Smith"),
        (None, "label"),
        ("", "label"),
        ("   ", "label"),
        # What an anonymous visitor was called before labels, in old tokens and chats.
        ("Visitor", "label"),
    ],
)
def test_a_given_name_is_kept_and_no_name_is_a_label(given: str | None, shown: str) -> None:
    name = visitor_name("v_0123456789abcdef01234567", given)
    if shown == "label":
        assert LABEL.match(name), name
    else:
        assert name == shown


def test_a_label_is_stable_for_one_visitor_and_differs_between_visitors() -> None:
    ids = [f"v_{n:024x}" for n in range(50)]
    labels = {visitor_name(i, None) for i in ids}
    assert len(labels) == len(ids)
    assert [visitor_name(i, "") for i in ids] == [visitor_name(i, None) for i in ids]


async def test_anonymous_visitors_have_their_own_labels_in_console_review_and_export(
    redis_db: str,
) -> None:
    async with running(redis_db) as srv:
        jelena = await agent(srv, redis_db, "jelena")
        await make_account(redis_db, "boss", role="supervisor")
        first, second = await visitor(srv), await visitor(srv)
        named = await visitor(srv, name="Ana Kovač")
        convs, shown = [], []
        for client, text in ((first, "Where is my parcel?"), (second, "Hello"), (named, "Hi")):
            conv = (await client.say(text))["conversation"]
            assigned = await jelena.expect("assignment", conversation=conv)
            [got] = [e for e in assigned["events"] if e["type"] == "message"]
            # The chat list and the message itself name the visitor alike.
            assert got["from"]["name"] == assigned["visitor"]["name"]
            assert got["from"]["id"] == client.welcome["user"]["id"]
            assert client.welcome["user"]["name"] == assigned["visitor"]["name"]
            convs.append(conv)
            shown.append(assigned["visitor"]["name"])
        one, two, ana = shown
        assert LABEL.match(one) and LABEL.match(two) and one != two, shown
        assert ana == "Ana Kovač"
        assert one == visitor_name(first.welcome["user"]["id"], None)

        boss = {"Authorization": "Bearer " + await session_token(srv.base, "boss")}
        async with httpx.AsyncClient(base_url=srv.base, headers=boss, timeout=5) as http:
            listed = (await http.get("/api/review/conversations")).json()["items"]
            assert {c["conversation"]: c["visitor"]["name"] for c in listed} == dict(
                zip(convs, shown, strict=True)
            )
            live = (await http.get("/api/review/live")).json()["items"]
            assert {c["conversation"]: c["visitor"]["name"] for c in live} == dict(
                zip(convs, shown, strict=True)
            )
            rest = (await http.get(f"/api/conversations/{convs[0]}")).json()
            assert rest["conversation"]["visitor"]["name"] == one
            t = (await http.get(f"/api/review/conversations/{convs[0]}")).json()
            assert t["visitor"]["name"] == one
            assert [e["from"]["name"] for e in t["events"] if e["type"] == "message"] == [one]
            txt = (await http.get(f"/api/review/conversations/{convs[0]}/export?format=txt")).text
            assert f"{one}: Where is my parcel?" in txt
        for c in (first, second, named, jelena):
            await c.close()


async def test_chats_from_before_labels_are_shown_with_labels(redis_db: str) -> None:
    """Chats and tokens from when every anonymous visitor was "Visitor" read as labels."""
    async with running(redis_db) as srv:
        jelena = await agent(srv, redis_db, "jelena")
        await make_account(redis_db, "boss", role="supervisor")
        anon = await visitor(srv, name="Visitor")
        conv = (await anon.say("Are you there?"))["conversation"]
        label = (await jelena.expect("assignment", conversation=conv))["visitor"]["name"]
        assert LABEL.match(label), label
        # Rewrite the stored chat as it was stored before.
        conns = await redisconn.connect(redis_db)
        try:
            r = conns.commands
            await r.hset(conv_key(conv, "state"), "visitor_name", "Visitor")
            [(seq, fields)] = await r.xrange(conv_key(conv, "events"), count=1)
            event = json.loads(fields["e"])
            assert event["from"]["name"] == label
            event["from"]["name"] = "Visitor"
            await r.xdel(conv_key(conv, "events"), seq)
            await r.xadd(conv_key(conv, "events"), {"e": json.dumps(event)})
        finally:
            await conns.aclose()
        boss = {"Authorization": "Bearer " + await session_token(srv.base, "boss")}
        async with httpx.AsyncClient(base_url=srv.base, headers=boss, timeout=5) as http:
            t = (await http.get(f"/api/review/conversations/{conv}")).json()
        assert t["visitor"]["name"] == label
        assert [e["from"]["name"] for e in t["events"] if e["type"] == "message"] == [label]
        for c in (anon, jelena):
            await c.close()


async def test_the_queue_names_who_is_waiting(redis_db: str) -> None:
    async with running(redis_db) as srv:
        jelena = await agent(srv, redis_db, "jelena", capacity=1)
        first = await visitor(srv)
        await jelena.expect("assignment", conversation=(await first.say("Hi"))["conversation"])
        anon, named = await visitor(srv), await visitor(srv, name="Ana Kovač")
        waiting = [(await v.say("Still there?"))["conversation"] for v in (anon, named)]
        for _ in range(50):
            snapshot = await jelena.expect("queue_snapshot")
            if [q["conversation"] for q in snapshot["queue"]] == waiting:
                break
        names = [q["visitor_name"] for q in snapshot["queue"]]
        assert names == [visitor_name(anon.welcome["user"]["id"], None), "Ana Kovač"], snapshot
        for c in (first, anon, named, jelena):
            await c.close()
