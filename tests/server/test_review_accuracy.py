"""What the review pages say about a chat is what happened in it: who sent each flagged
message, the customer's rating and comment, which categories it had, on a real server
with the real coach and Redis."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.server.support import (
    agent,
    apply_a_suggestion,
    close_all,
    console,
    ignore_a_suggestion,
    open_chat,
    running_with_coach,
    start_chat,
    supervisor_http,
    visitor,
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


async def test_exports_carry_the_rating_comment_and_the_whispers(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        async with await supervisor_http(srv, redis_db) as sup:
            boss = await console(srv, "sanja")
            await boss.send(type="whisper", id="w1", conversation=conv, text="Offer the refund.")
            await boss.expect("pong", ref="w1")
            await ag.say("Hi, I'm Ana, I have refunded the parcel.", conversation=conv)
            await ag.send(type="close", conversation=conv)
            await vi.expect("closed")
            comment = "Took far too long, and nobody said sorry."
            await vi.send(type="csat", id="r1", conversation=conv, score=1, comment=comment)
            await vi.expect("pong", ref="r1")
            url = f"/api/review/conversations/{conv}/export"
            text = (await sup.get(url, params={"format": "txt"})).text
            assert f"CSAT 1, the customer's comment: {comment!r}" in text
            lines = text.splitlines()
            [whisper] = [i for i, line in enumerate(lines) if "Offer the refund." in line]
            assert "(whisper, private to the agent) Sanja: Offer the refund." in lines[whisper]
            [reply] = [i for i, line in enumerate(lines) if "I have refunded" in line]
            assert whisper < reply
            got = await sup.get(url, params={"format": "csv"})
            # A byte order mark first: Excel reads the file as UTF-8, not as ANSI.
            assert got.content.startswith(b"\xef\xbb\xbf")
            rows = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
            assert rows and all((r["csat"], r["csat_comment"]) == ("1", comment) for r in rows)
            # Each row names its sender as the transcript does; the whisper is a row of its
            # own, by time, from the supervisor and marked as one.
            said = [(r["from"], r["from_name"], r["whisper"], r["text"]) for r in rows]
            assert said[-2:] == [
                ("supervisor", "Sanja", "yes", "Offer the refund."),
                ("agent", "Ana", "", "Hi, I'm Ana, I have refunded the parcel."),
            ], said
            assert all(r["from_name"] for r in rows if not r["event"]), said
            for r in rows:
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]), r
                when = datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
                assert int(when.timestamp() * 1000) == int(r["ts"])
            await boss.close()
        await close_all(vi, ag)


async def test_category_filter_finds_flags_of_every_outcome_and_customer_cues(
    redis_db: str,
) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, applied_vi, applied = await start_chat(srv, redis_db)
        assert (await apply_a_suggestion(ag, applied))["outcome"] == "applied"  # dont_know
        upset_vi, upset = await open_chat(srv, ag, "This is ridiculous, I am so angry!!!")
        await ag.expect("script", conversation=upset)
        ack = await ag.say("Hi, I'm Ana, let me check that for you.", conversation=upset)
        assert (await ag.expect("coach_checked", ref=ack["ref"]))["outcome"] == "clean"
        async with await supervisor_http(srv, redis_db) as sup:

            async def listed(**params: str) -> dict[str, dict[str, Any]]:
                r = await sup.get("/api/review/conversations", params=params)
                return {c["conversation"]: c for c in r.json()["items"]}

            everything = await listed()
            assert everything[applied]["flags"]["total"] == 1
            assert everything[applied]["flags"]["categories"] == ["dont_know"]
            assert everything[upset]["cues"] == ["frustration"]
            assert list(await listed(category="dont_know")) == [applied]
            assert list(await listed(category="frustration")) == [upset]
            assert list(await listed(category="escalation_request")) == []
        await close_all(applied_vi, upset_vi, ag)


async def test_a_set_export_is_a_list_whatever_its_length(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        async with await supervisor_http(srv, redis_db) as sup:

            async def exported(**params: str) -> Any:
                r = await sup.get("/api/review/export", params={"format": "json", **params})
                assert r.status_code == 200
                return r.json()

            assert await exported(lang="sl") == []
            [one] = await exported()
            assert one["conversation"] == conv
            alone = await sup.get(
                f"/api/review/conversations/{conv}/export", params={"format": "json"}
            )
            assert alone.json()["conversation"] == conv
            other_vi, other = await open_chat(srv, ag, "Where is my refund?")
            assert {t["conversation"] for t in await exported()} == {conv, other}
        await close_all(vi, other_vi, ag)


async def test_a_take_over_reads_as_one_and_a_transfer_as_a_transfer(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        jelena, marko, vi, conv = await transferred_chat(srv, redis_db)
        async with await supervisor_http(srv, redis_db) as sup:
            boss = await console(srv, "sanja")
            await boss.send(type="take_over", conversation=conv)
            await boss.expect("assignment", conversation=conv)
            t = (await sup.get(f"/api/review/conversations/{conv}")).json()
            moves = [
                (e["agent"]["id"], e["taken_over"])
                for e in t["events"]
                if e["type"] == "transferred"
            ]
            assert moves == [("marko", False), ("sanja", True)]
            text = (
                await sup.get(f"/api/review/conversations/{conv}/export", params={"format": "txt"})
            ).text
            assert "-- transferred from Jelena to Marko" in text
            assert "-- Sanja (supervisor) took the chat over" in text
            await boss.close()
        await close_all(vi, jelena, marko)


async def test_exports_say_who_handed_the_chat_to_whom_with_the_note(redis_db: str) -> None:
    # The transcript shows "Transferred to Marko · note: …"; the text and CSV exports,
    # of the one chat and of the list, say the same with who handed it over, name who
    # was assigned the chat, and leave the read receipts out of the text.
    async with running_with_coach(redis_db) as srv:
        jelena, vi, conv = await start_chat(srv, redis_db, "jelena")
        marko = await agent(srv, redis_db, "marko")
        note = "Wants a refund for order 1182, already checked the courier."
        await jelena.send(type="transfer", id="t1", conversation=conv, to_agent="marko", note=note)
        await marko.expect("assignment", conversation=conv)
        ack = await marko.say("Hi, I'm Marko, let me check that for you.", conversation=conv)
        await vi.send(type="read", conversation=conv, seq=ack["seq"])
        async with await supervisor_http(srv, redis_db) as sup:
            boss = await console(srv, "sanja")
            await boss.send(type="take_over", conversation=conv, note="Third refund this week")
            await boss.expect("assignment", conversation=conv)
            for _ in range(50):
                t = (await sup.get(f"/api/review/conversations/{conv}")).json()
                if any(e["type"] == "read" for e in t["events"]):
                    break
                await asyncio.sleep(0.1)
            assert any(e["type"] == "read" for e in t["events"])  # in the JSON export only
            for url in (f"/api/review/conversations/{conv}/export", "/api/review/export"):
                text = (await sup.get(url, params={"format": "txt"})).text
                moves = [line.split("] -- ", 1)[1] for line in text.splitlines() if "] -- " in line]
                assert moves == [
                    "assigned to Jelena",
                    f"transferred from Jelena to Marko, note: {note!r}",
                    "Sanja (supervisor) took the chat over from Marko,"
                    " note: 'Third refund this week'",
                ], (url, text)
                got = await sup.get(url, params={"format": "csv"})
                rows = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
                said = [r["event"] or r["text"] for r in rows]
                assert said == [
                    "Hello, my parcel is late.",
                    "assigned",
                    "transferred",
                    "Hi, I'm Marko, let me check that for you.",
                    "taken_over",
                ], url
                cols = ("event_from", "event_from_name", "event_to", "event_to_name", "note")
                events = [tuple(r[c] for c in cols) for r in rows if r["event"]]
                assert events == [
                    ("", "", "jelena", "Jelena", ""),
                    ("jelena", "Jelena", "marko", "Marko", note),
                    ("marko", "Marko", "sanja", "Sanja", "Third refund this week"),
                ], url
                assert all(r["time"] and r["seq"] for r in rows), url
            await boss.close()
        await close_all(vi, jelena, marko)


async def test_a_chat_requeued_when_its_agent_went_offline_reads_back_in_the_queue(
    redis_db: str,
) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        await ag.send(type="status", status="offline")
        async with await supervisor_http(srv, redis_db) as sup:
            url = f"/api/review/conversations/{conv}/export"
            for _ in range(50):
                text = (await sup.get(url, params={"format": "txt"})).text
                if "-- back in the queue" in text:
                    break
                await asyncio.sleep(0.1)
            assert "-- back in the queue (Ana went offline)" in text, text
            assert "transferred to -" not in text
        await close_all(vi, ag)


async def live_row(sup: Any, conv: str) -> dict[str, Any]:
    """The live monitor's row of ``conv``."""
    items = (await sup.get("/api/review/live")).json()["items"]
    [row] = [i for i in items if i["conversation"] == conv]
    return dict(row)


async def test_live_tells_a_left_message_nobody_online_can_answer_in_its_language(
    redis_db: str,
) -> None:
    async with running_with_coach(redis_db) as srv:
        ivo = await agent(srv, redis_db, "ivo", languages=["en"])
        vi = await visitor(srv, lang="sr")
        assert vi.welcome["agents_online"] == 0
        await vi.send(type="leave_message", id="lm1", name="Ana", email="ana@example.com",
                      text="Pozovite me, molim vas.")
        conv = (await vi.expect("ack", ref="lm1"))["conversation"]
        async with await supervisor_http(srv, redis_db) as sup:
            row = await live_row(sup, conv)
            assert (row["status"], row["lang"], row["left_message"]) == ("queued", "sr", True)
            assert (row["agents_online"], row["no_agent_for_lang"]) == (0, True)
            jelena = await agent(srv, redis_db, "jelena", languages=["en", "sr"])
            row = await live_row(sup, conv)
            assert (row["left_message"], row["agents_online"], row["no_agent_for_lang"]) == (
                True, 1, False)
            await jelena.send(type="accept", conversation=conv)
            await jelena.expect("assignment", conversation=conv)
            row = await live_row(sup, conv)
            assert (row["status"], row["left_message"], row["no_agent_for_lang"]) == (
                "assigned", False, False)
        await close_all(vi, ivo, jelena)



async def cue_of(sup: Any, conv: str, seq: str) -> dict[str, Any]:
    """The live row's last cue once it is that of the message ``seq`` (within 5 s)."""
    for _ in range(50):
        cue = (await live_row(sup, conv))["last_cue"]
        if cue and cue["seq"] == seq:
            return dict(cue)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no cue of {seq}: {cue}")


async def test_live_last_cue_quotes_the_customers_words_around_it(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        async with await supervisor_http(srv, redis_db) as sup:
            short = "My parcel is two weeks late and nobody answers the phone!!!"
            cue = await cue_of(sup, conv, (await vi.say(short))["seq"])
            assert (cue["category"], cue["text"], cue["said"]) == ("frustration", "!!!", short)
            long = "Order 1182: " + "I waited all week at home for the courier. " * 4 + "Why!!!"
            cue = await cue_of(sup, conv, (await vi.say(long))["seq"])
            said = cue["said"]
            assert said.startswith("…") and said.endswith("courier. Why!!!"), said
            assert len(said) <= 80 and said[1:] in long
        await close_all(vi, ag)


async def test_scorecard_days_without_activity_have_no_rates_only_zero_counts(
    redis_db: str,
) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        ack = await ag.say("Hi, I'm Ana, let me check that for you.", conversation=conv)
        await ag.expect("coach_checked", ref=ack["ref"])
        today = datetime.now(UTC).date()
        params = {"agent": "ana", "from": str(today - timedelta(days=2)), "to": str(today)}
        async with await supervisor_http(srv, redis_db) as sup:
            [card] = (await sup.get("/api/review/scorecards", params=params)).json()["agents"]
        *quiet, busy = card["days"]
        rates = ("flags_per_100_total", "flags_per_100", "applied_share", "first_response_s")
        for day in quiet:
            assert (day["messages"], day["flags_raised"], day["conversations"]) == (0, 0, 0)
            assert {k: day[k] for k in (*rates, "handling_s", "csat")} == dict.fromkeys(
                (*rates, "handling_s", "csat")
            )
        assert busy["day"] == str(today) and busy["messages"] == 1
        assert (busy["flags_per_100_total"], busy["flags_per_100"]) == (0.0, {})
        assert busy["first_response_s"] is not None
        await close_all(vi, ag)


async def test_a_left_messages_first_response_is_timed_from_when_it_was_accepted(
    redis_db: str,
) -> None:
    async with running_with_coach(redis_db) as srv:
        vi = await visitor(srv)
        await vi.send(type="leave_message", id="lm1", name="Ana", email="ana@example.com",
                      text="Please call me back about order 1182.")
        conv = (await vi.expect("ack", ref="lm1"))["conversation"]
        await asyncio.sleep(2.0)  # nobody online to take it
        ag = await agent(srv, redis_db, "ana")
        await ag.send(type="accept", conversation=conv)
        await ag.expect("assignment", conversation=conv)
        ack = await ag.say("Hi, I'm Ana, I am calling you now.", conversation=conv)
        await ag.expect("coach_checked", ref=ack["ref"])
        async with await supervisor_http(srv, redis_db) as sup:
            [card] = (await sup.get("/api/review/scorecards", params={"agent": "ana"})).json()[
                "agents"
            ]
        assert card["first_response_s"] is not None and card["first_response_s"] < 1.5
        await close_all(vi, ag)
