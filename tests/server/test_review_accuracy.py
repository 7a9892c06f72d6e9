"""What the review pages say about a chat is what happened in it: who sent each flagged
message, the customer's rating and comment, which categories it had, on a real server
with the real coach and Redis."""

from __future__ import annotations

from typing import Any

from tests.server.support import (
    agent,
    close_all,
    ignore_a_suggestion,
    running_with_coach,
    start_chat,
    supervisor_http,
)


async def transferred_chat(srv: Any, redis_url: str) -> tuple[Any, Any, Any, str]:
    """Jelena gets a chat and says "Calm down." despite the coach, then transfers it to
    Marko, who answers cleanly: Jelena, Marko, the visitor and the conversation."""
    jelena, vi, conv = await start_chat(srv, redis_url, "jelena")
    assert (await ignore_a_suggestion(jelena, conv))["outcome"] == "ignored"
    marko = await agent(srv, redis_url, "marko")
    await jelena.send(type="transfer", id="t1", conversation=conv, to_agent="marko")
    await marko.expect("assignment", conversation=conv)
    ack = await marko.say("Hi, I'm Marko, let me check that for you.", conversation=conv)
    assert (await marko.expect("coach_checked", ref=ack["ref"]))["outcome"] == "clean"
    return jelena, marko, vi, conv


async def test_each_flag_is_credited_to_the_agent_who_sent_the_message(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        jelena, marko, vi, conv = await transferred_chat(srv, redis_db)
        async with await supervisor_http(srv, redis_db) as sup:
            [item] = (await sup.get("/api/review/conversations")).json()["items"]
            assert item["agents"] == [
                {"id": "jelena", "name": "Jelena"},
                {"id": "marko", "name": "Marko"},
            ]
            assert (item["agent"], item["agent_name"]) == ("marko", "Marko")
            t = (await sup.get(f"/api/review/conversations/{conv}")).json()
            assert t["agents"] == item["agents"]
            assert t["flags"] and {(f["agent"], f["agent_name"]) for f in t["flags"]} == {
                ("jelena", "Jelena")
            }
            text = (
                await sup.get(f"/api/review/conversations/{conv}/export", params={"format": "txt"})
            ).text
            assert "agents Jelena -> Marko" in text
            assert "(Jelena: ignored)" in text
            cards = (await sup.get("/api/review/scorecards")).json()["agents"]
            by_agent = {c["agent"]: c for c in cards}
            assert by_agent["jelena"]["messages"] == 1
            assert by_agent["jelena"]["flags_raised"] == len(t["flags"])
            assert by_agent["jelena"]["flags_per_100_total"] == len(t["flags"]) * 100
            assert by_agent["marko"]["messages"] == 1
            assert by_agent["marko"]["flags_raised"] == 0
        await close_all(vi, jelena, marko)
