"""Live coaching in the chat and supervisor review, with the real coach, server and Redis."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import pytest

from tests.server.support import (
    agent,
    apply_a_suggestion,
    burst_of_drafts,
    close_all,
    connect,
    console,
    http_as,
    ignore_a_suggestion,
    make_account,
    open_chat,
    running,
    running_with_coach,
    start_chat,
    supervisor_http,
    visitor,
)

ROOT = Path(__file__).resolve().parents[2]
#: A reload compiles the rules that changed: seconds, more on a busy machine.
RELOAD_TIMEOUT_S = 120.0


async def test_drafts_are_coached_and_the_newest_wins(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        await ag.send(
            type="draft", conversation=conv, draft_id=2, text="I don't know, that's not my job."
        )
        coach = await ag.expect("coach", conversation=conv)
        assert coach["draft_id"] == 2
        assert {f["category"] for f in coach["flags"]} >= {"dont_know", "not_my_job"}
        for f in coach["flags"]:
            assert "I don't know, that's not my job."[f["start"] : f["end"]] == f["text"]
            assert f["suggestions"]
        await ag.send(type="draft", conversation=conv, draft_id=1, text="I don't know")
        assert await ag.quiet("coach") == []  # older than one answered: dropped
        await ag.send(type="draft", conversation=conv, draft_id=3, text="Let me find out for you.")
        clean = await ag.expect("coach", conversation=conv, draft_id=3)
        assert clean["flags"] == []
        async with httpx.AsyncClient(timeout=5) as http:
            metrics = (await http.get(srv.base + "/metrics")).text
        assert "tactline_draft_check_seconds_count 2" in metrics
        await close_all(vi, ag)


async def test_a_burst_of_drafts_is_answered_for_the_newest_without_a_backlog(
    redis_db: str,
) -> None:
    # Forty drafts arrive in one TCP write, as from a fast typist on a slow link: the
    # newest takes the place of those still waiting, so the agent gets the answer to
    # draft 40 and not a queue of answers to drafts already outdated.
    async with running_with_coach(redis_db, rate_conn_burst="100") as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        await burst_of_drafts(ag, conv, "I don't know, that's not my job, but let me check")
        last = await ag.expect("coach", conversation=conv, draft_id=40)
        assert {f["category"] for f in last["flags"]} >= {"dont_know", "not_my_job"}
        earlier = [f for f in ag.skipped if f.get("type") == "coach"]
        earlier += await ag.quiet("coach")
        assert len(earlier) < 10, [f["draft_id"] for f in earlier]
        assert all(f["draft_id"] < 40 for f in earlier)
        await close_all(vi, ag)


async def test_draft_for_someone_elses_chat_is_an_error(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        other = await agent(srv, redis_db, "boris")
        await other.send(type="draft", id="d1", conversation=conv, draft_id=1, text="hello")
        err = await other.expect("error")
        assert err["code"] == "not_in_conversation" and err["ref"] == "d1"
        await vi.send(type="draft", id="d2", conversation=conv, draft_id=1, text="x")
        assert (await vi.expect("error"))["code"] == "unknown_type"


async def test_sent_message_records_what_the_agent_did(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        applied = await apply_a_suggestion(ag, conv)
        assert applied["outcome"] == "applied"
        ignored = await ignore_a_suggestion(ag, conv)
        assert ignored["outcome"] == "ignored"
        clean = await ag.say("Let me check that for you.", conversation=conv)
        assert (await ag.expect("coach_checked", ref=clean["ref"]))["outcome"] == "clean"
        async with await supervisor_http(srv, redis_db) as sup:
            t = (await sup.get(f"/api/review/conversations/{conv}")).json()
            outcomes = sorted(f["outcome"] for f in t["flags"])
            assert outcomes == ["applied", "ignored"]
        # A console opened again is told the same of each flagged message; a visitor never.
        again = await agent(srv, redis_db, "ana", create=False)
        (view,) = [c for c in again.welcome["conversations"] if c["conversation"] == conv]
        assert view["coached"] == {applied["ref"]: "applied", ignored["ref"]: "ignored"}
        reloaded = await connect(srv.ws, "/ws/visitor", vi.token)
        assert reloaded.welcome["conversations"][0]["coached"] is None
        await close_all(again, reloaded)


async def test_sensitive_data_request_is_refused_until_overridden(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        ask = "Please send me your full card number and the CVV."
        await ag.send(type="message", id="s1", conversation=conv, text=ask)
        err = await ag.expect("error", ref="s1")
        assert err["code"] == "sensitive_data" and err["suggestions"] and err["flags"]
        # Nothing reached the visitor.
        assert [m for m in await vi.quiet("message") if m.get("id") == "s1"] == []
        await ag.send(type="message", id="s1", conversation=conv, text=ask, override=True)
        await ag.expect("ack", ref="s1")
        seen = await vi.expect("message", id="s1")
        assert seen["text"] == ask and "override" not in seen
        # The agent's own copy says it went out anyway, live and after a reload.
        assert (await ag.expect("message", id="s1"))["override"] is True
        await ag.say("Thank you.", conversation=conv, msg_id="s2")
        assert "override" not in await ag.expect("message", id="s2")
        again = await agent(srv, redis_db, "ana", create=False)
        (view,) = [c for c in again.welcome["conversations"] if c["conversation"] == conv]
        by_id = {e.get("id"): e for e in view["events"] if e["type"] == "message"}
        assert by_id["s1"]["override"] is True and "override" not in by_id["s2"]
        reloaded = await connect(srv.ws, "/ws/visitor", vi.token)
        (mine,) = reloaded.welcome["conversations"]
        assert [e for e in mine["events"] if "override" in e] == []
        assert mine["whispers"] is None
        async with await supervisor_http(srv, redis_db) as sup:
            t = (await sup.get(f"/api/review/conversations/{conv}")).json()
            assert [o["ref"] for o in t["overrides"]] == ["s1"]
            assert any(f["override"] for f in t["flags"])
        await close_all(ag, vi, again, reloaded)


async def test_card_numbers_are_masked_for_everyone(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag = await agent(srv, redis_db, "ana")
        vi, conv = await open_chat(srv, ag, "my card is 4111 1111 1111 1111", name="Marko")
        await vi.say("or 5500 0000 0000 0004")
        got = await ag.expect("message", conversation=conv, text="or •••• •••• •••• 0004")
        assert "5500" not in got["text"]
        # Nor in the lists that quote the visitor's words.
        async with await supervisor_http(srv, redis_db) as sup:
            [row] = (await sup.get("/api/review/live")).json()["items"]
            assert row["preview"] == "my card is •••• •••• •••• 1111"
            [listed] = (await sup.get("/api/conversations")).json()["items"]
            assert listed["preview"] == "my card is •••• •••• •••• 1111"
        await close_all(ag, vi)


async def test_card_numbers_are_masked_without_the_coach_too(redis_db: str) -> None:
    async with running(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        await vi.say("card 4111 1111 1111 1111 please")
        await ag.expect("message", conversation=conv, text="card •••• •••• •••• 1111 please")
        await ag.say("Is 5500 0000 0000 0004 the card?", conversation=conv)
        await vi.expect("message", text="Is •••• •••• •••• 0004 the card?")
        async with await supervisor_http(srv, redis_db) as sup:
            [listed] = (await sup.get("/api/conversations")).json()["items"]
            assert "4111" not in listed["preview"]
        await close_all(ag, vi)


async def test_upset_customer_gives_the_agent_one_script(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        await vi.say("This is ridiculous, I am so angry!!!")
        script = await ag.expect("script", conversation=conv)
        assert script["category"] == "frustration" and script["scripts"]
        # The card quotes what the customer said, not only the words that cued it.
        assert script["cue"]["said"] == "This is ridiculous, I am so angry!!!"
        assert "{" not in " ".join(script["scripts"])
        assert "Marko" in " ".join(script["scripts"]) or "Ana" in " ".join(script["scripts"])
        await vi.say("Still ridiculous!!!")
        assert await ag.quiet("script", within=0.5) == []  # cooldown
        await vi.close()


async def test_a_console_opened_again_gets_the_scripts_of_its_chats_again(
    redis_db: str,
) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        said = "I have called three times already, this is ridiculous!!!"
        await vi.say(said)
        offered = {s["category"]: s for s in [await ag.expect("script") for _ in range(2)]}
        again = await agent(srv, redis_db, "ana", create=False)
        shown = {s["category"]: s for s in [await again.expect("script") for _ in range(2)]}
        assert shown == offered
        assert await again.quiet("script") == []
        # Not another agent's console, nor the visitor's.
        marko = await agent(srv, redis_db, "marko")
        assert await marko.quiet("script") == []
        await close_all(ag, vi, again, marko)


async def test_the_agent_a_chat_is_transferred_to_gets_its_scripts_at_once(
    redis_db: str,
) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        said = "I have called three times already, this is ridiculous!!!"
        await vi.say(said)
        offered = [await ag.expect("script", conversation=conv) for _ in range(2)]
        assert {s["category"] for s in offered} == {"frustration", "repeat_contact"}
        marko = await agent(srv, redis_db, "marko")
        await ag.send(type="transfer", conversation=conv, to_agent="marko", note="upset")
        await marko.expect("assignment", conversation=conv)
        # At once, in his own name: he knows the customer is upset before they write again.
        handed = {s["category"]: s for s in [await marko.expect("script") for _ in range(2)]}
        assert set(handed) == {"frustration", "repeat_contact"}
        assert handed["frustration"]["cue"]["said"] == said
        named = handed["repeat_contact"]["scripts"]
        assert any("my name is Marko" in s for s in named), named
        assert not any("my name is Ana" in s for s in named), named
        await vi.say("Still ridiculous!!!")  # within the cooldown: offered to him already
        assert await marko.quiet("script", within=0.5) == []
        assert await ag.quiet("script", within=0.5) == []
        async with await supervisor_http(srv, redis_db) as sup:
            t = (await sup.get(f"/api/review/conversations/{conv}")).json()
            assert sorted(s["to"] for s in t["scripts"]) == ["ana", "ana", "marko", "marko"]
        await close_all(vi, ag, marko)


REPEAT_AND_UPSET = {
    "sr-Cyrl": "Ово је ТРЕЋИ ПУТ да питам!!! И даље није решено",
    "sr-Latn": "Ovo je TREĆI PUT da pitam!!! I dalje nije rešeno",
}


@pytest.mark.parametrize("agent_online", [True, False], ids=["routed", "queued"])
@pytest.mark.parametrize("script", sorted(REPEAT_AND_UPSET))
async def test_the_message_that_opens_a_chat_gives_its_agent_the_scripts(
    redis_db: str, script: str, agent_online: bool
) -> None:
    async with running_with_coach(redis_db) as srv:
        if agent_online:
            ag = await agent(srv, redis_db, "ana", languages=["sr"])
        vi = await visitor(srv, lang="sr", name="Marko")
        conv = (await vi.say(REPEAT_AND_UPSET[script]))["conversation"]
        if not agent_online:  # coached while nobody had the chat, given to who takes it
            await vi.expect("queue", conversation=conv)
            ag = await agent(srv, redis_db, "ana", languages=["sr"])
        await ag.expect("assignment", conversation=conv)
        scripts = [await ag.expect("script", conversation=conv) for _ in range(2)]
        assert {s["category"] for s in scripts} == {"frustration", "repeat_contact"}
        assert await ag.quiet("script", within=1.5) == []  # once each
        await vi.close()


async def test_scripts_of_a_chat_closed_before_an_agent_had_it_go_to_nobody(
    redis_db: str,
) -> None:
    async with running_with_coach(redis_db) as srv:
        vi = await visitor(srv, lang="sr", name="Marko")
        conv = (await vi.say(REPEAT_AND_UPSET["sr-Latn"]))["conversation"]
        await vi.expect("queue", conversation=conv)
        await vi.send(type="close")
        await vi.expect("closed", conversation=conv)
        ag = await agent(srv, redis_db, "ana", languages=["sr"])
        assert await ag.quiet("script", "assignment", within=2.5) == []
        await vi.close()


async def test_waiting_customer_nudges_the_agent(redis_db: str) -> None:
    async with running_with_coach(redis_db, hold_after_s=1.0) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        nudge = await ag.expect("nudge", conversation=conv, timeout=8)
        assert nudge["category"] == "hold_without_update" and nudge["suggestions"]
        assert nudge["waited_s"] >= 1


async def test_first_reply_without_introduction_is_nudged(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        await ag.say("How can I help?", conversation=conv)
        nudge = await ag.expect("nudge", conversation=conv, category="missing_introduction")
        assert "Ana" in nudge["suggestions"][0]


async def test_whisper_reaches_the_agent_and_never_the_visitor(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        await make_account(redis_db, "sanja", role="supervisor")
        sup = await console(srv, "sanja")
        await sup.send(type="watch", conversation=conv)
        watching = await sup.expect("watching", conversation=conv)
        assert [e["text"] for e in watching["events"] if e["type"] == "message"] == [
            "Hello, my parcel is late."
        ]
        await sup.send(type="whisper", id="w1", conversation=conv, text="Offer the express refund.")
        whisper = await ag.expect("whisper", conversation=conv)
        assert whisper["text"] == "Offer the express refund." and whisper["from"]["id"] == "sanja"
        # The agent who reloads the console finds it in the conversation again.
        again = await agent(srv, redis_db, "ana", create=False)
        (view,) = [c for c in again.welcome["conversations"] if c["conversation"] == conv]
        assert view["whispers"] == [
            {"ts": whisper["ts"], "from": whisper["from"], "text": "Offer the express refund."}
        ]
        await again.close()
        seen = await vi.quiet("whisper", "message")
        assert [
            f for f in seen if f["type"] == "whisper" or "express refund" in f.get("text", "")
        ] == []
        await vi.say("Any news?")
        assert (await sup.expect("message", conversation=conv))["text"] == "Any news?"
        # An agent may not whisper.
        await ag.send(type="whisper", id="w2", conversation=conv, text="x")
        assert (await ag.expect("error", ref="w2"))["code"] == "forbidden"
        await sup.send(type="take_over", conversation=conv, note="I'll handle it")
        moved = await vi.expect("transferred")
        assert moved["agent"]["id"] == "sanja" and "note" not in moved
        reply = await sup.say("Hi, I'm Sanja, the supervisor.", conversation=conv)
        assert (await vi.expect("message", id=reply["ref"]))["from"]["role"] == "supervisor"


async def test_the_next_agent_reads_neither_the_last_ones_whispers_nor_their_coaching(
    redis_db: str,
) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        await make_account(redis_db, "sanja", role="supervisor")
        sup = await console(srv, "sanja")
        await sup.send(type="whisper", id="w1", conversation=conv, text="Ana, that was rude.")
        await ag.expect("whisper", conversation=conv)
        ignored = await ignore_a_suggestion(ag, conv)
        marko = await agent(srv, redis_db, "marko")
        await ag.send(type="transfer", conversation=conv, to_agent="marko", note="over to you")
        await marko.expect("assignment", conversation=conv)
        await sup.send(type="whisper", id="w2", conversation=conv, text="Marko, go gently.")
        await marko.expect("whisper", conversation=conv)
        again = await agent(srv, redis_db, "marko", create=False)
        (view,) = [c for c in again.welcome["conversations"] if c["conversation"] == conv]
        assert [w["text"] for w in view["whispers"]] == ["Marko, go gently."]
        assert view["coached"] == {}
        # A supervisor who takes the chat over reads all of it.
        await sup.send(type="take_over", conversation=conv)
        await sup.expect("assignment", conversation=conv)
        boss = await console(srv, "sanja")
        (view,) = [c for c in boss.welcome["conversations"] if c["conversation"] == conv]
        assert [w["text"] for w in view["whispers"]] == ["Ana, that was rude.", "Marko, go gently."]
        assert view["coached"] == {ignored["ref"]: "ignored"}
        await close_all(vi, ag, marko, again, sup, boss)


async def test_review_filters_false_alarms_exports_and_roles(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        await ag.say("I don't know.", conversation=conv)
        await ag.expect("coach_checked")
        await ag.send(type="close", conversation=conv)
        await vi.expect("closed")
        await vi.send(type="csat", id="r1", conversation=conv, score=4, comment="ok")
        await vi.expect("pong", ref="r1")
        # Once: a second rating changes neither the score nor the comment.
        await vi.send(type="csat", id="r2", conversation=conv, score=1, comment="changed")
        assert (await vi.expect("error", ref="r2"))["code"] == "forbidden"
        async with await supervisor_http(srv, redis_db) as sup:
            page = (await sup.get("/api/review/conversations", params={"has_flags": "true"})).json()
            assert [i["conversation"] for i in page["items"]] == [conv]
            assert page["items"][0]["csat"] == 4
            rated = (await sup.get(f"/api/review/conversations/{conv}")).json()
            assert (rated["csat"], rated["csat_comment"]) == (4, "ok")
            assert (
                await sup.get("/api/review/conversations", params={"category": "blame"})
            ).json()["total"] == 0
            t = (await sup.get(f"/api/review/conversations/{conv}")).json()
            [flag] = [f for f in t["flags"] if f["category"] == "dont_know"]
            r = await sup.post(
                f"/api/review/flags/{flag['id']}",
                json={"status": "false_alarm", "note": "fine here"},
            )
            assert r.status_code == 200 and r.json()["review"]["status"] == "false_alarm"
            quality = (await sup.get("/api/review/rule-quality")).json()
            [row] = [q for q in quality if q["rule"] == flag["rule"]]
            assert row["fires"] == 1 and row["false_alarms"] == 1 and row["rate"] == 1.0
            cards = (await sup.get("/api/review/scorecards", params={"agent": "ana"})).json()
            card = cards["agents"][0]
            assert card["messages"] == 1 and card["flags_per_100"]["dont_know"] == 100.0
            assert card["csat"] == 4.0
            csv_text = (
                await sup.get(f"/api/review/conversations/{conv}/export", params={"format": "csv"})
            ).text
            assert "I don't know." in csv_text and "dont_know" in csv_text
            txt = (
                await sup.get("/api/review/export", params={"format": "txt", "has_flags": "true"})
            ).text
            assert "I don't know." in txt
            bad = await sup.get("/api/review/export", params={"format": "pdf"})
            assert bad.status_code == 400
        async with await http_as(srv, "ana") as http:
            assert (await http.get("/api/review/conversations")).status_code == 403
            assert (await http.post("/api/rules/reload")).status_code == 403


async def test_rules_reload_keeps_running_rules_when_a_file_is_bad(
    redis_db: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    async with running_with_coach(redis_db, rules_dir=rules, data_dir=tmp_path / "var") as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        async with await supervisor_http(srv, redis_db) as sup:
            bad = rules / "en" / "dont_know.yaml"
            good_text = bad.read_text(encoding="utf-8")
            bad.write_text(
                good_text.replace("category: dont_know", "category: rudeness", 1), encoding="utf-8"
            )
            r = await sup.post("/api/rules/reload", timeout=RELOAD_TIMEOUT_S)
            assert r.status_code == 422
            assert "dont_know.yaml:" in r.json()["error"] and "rudeness" in r.json()["error"]
            ready = await sup.get("/readyz")
            assert ready.status_code == 200 and "rudeness" in ready.text
            await ag.send(type="draft", conversation=conv, draft_id=1, text="I don't know.")
            still = await ag.expect("coach", conversation=conv, draft_id=1)
            assert [f["category"] for f in still["flags"]] == ["dont_know"]

            bad.write_text(
                good_text.replace(
                    "      - phrase: no idea",
                    "      - phrase: no idea\n      - phrase: haven't the foggiest",
                    1,
                )
                if "      - phrase: no idea" in good_text
                else good_text,
                encoding="utf-8",
            )
            r = await sup.post("/api/rules/reload", timeout=RELOAD_TIMEOUT_S)
            assert r.status_code == 200 and r.json()["error"] is None
            assert "reload failed" not in (await sup.get("/readyz")).text


@pytest.mark.parametrize(
    "lang, text, category", [("sr", "Не знам, то није мој посао.", "dont_know")]
)
async def test_serbian_cyrillic_draft_gets_cyrillic_suggestions(
    redis_db: str, lang: str, text: str, category: str
) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db, lang=lang)
        await ag.send(type="draft", conversation=conv, draft_id=1, text=text)
        coach = await ag.expect("coach", conversation=conv)
        [flag] = [f for f in coach["flags"] if f["category"] == category]
        assert any("\u0400" <= ch <= "\u04ff" for ch in flag["suggestions"][0])


async def test_review_names_people_by_their_display_names(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        await ag.say("I don't know.", conversation=conv)
        await ag.expect("coach_checked")
        async with await supervisor_http(srv, redis_db) as sup:
            [live] = (await sup.get("/api/review/live")).json()["items"]
            assert (live["agent"], live["agent_name"]) == ("ana", "Ana")
            [item] = (await sup.get("/api/review/conversations")).json()["items"]
            assert (item["agent"], item["agent_name"]) == ("ana", "Ana")
            t = (await sup.get(f"/api/review/conversations/{conv}")).json()
            assert (t["agent"], t["agent_name"]) == ("ana", "Ana")
            cards = (await sup.get("/api/review/scorecards")).json()["agents"]
            assert {(c["agent"], c["name"]) for c in cards} >= {("ana", "Ana")}


async def test_review_list_counts_every_flag_and_those_left_to_review(redis_db: str) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        assert (await apply_a_suggestion(ag, conv))["outcome"] == "applied"
        ack = await ag.say("Calm down.", conversation=conv)
        assert (await ag.expect("coach_checked", ref=ack["ref"]))["outcome"] != "applied"
        async with await supervisor_http(srv, redis_db) as sup:
            t = (await sup.get(f"/api/review/conversations/{conv}")).json()
            [item] = (await sup.get("/api/review/conversations")).json()["items"]
            assert item["flags"]["total"] == len(t["flags"]) == 2
            assert item["flags"]["count"] == item["flags"]["open"] == 1
            [ignored] = [f for f in t["flags"] if f["outcome"] != "applied"]
            await sup.post(f"/api/review/flags/{ignored['id']}", json={"status": "reviewed"})
            [item] = (await sup.get("/api/review/conversations")).json()["items"]
            assert (item["flags"]["total"], item["flags"]["open"]) == (2, 0)


async def test_live_waiting_counts_from_the_unanswered_message_not_the_start(
    redis_db: str,
) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        async with await supervisor_http(srv, redis_db) as sup:
            [row] = (await sup.get("/api/review/live")).json()["items"]
            assert row["waiting_s"] is not None
            await ag.say("Hi, I'm Ana. Let me check.", conversation=conv)
            await vi.expect("message")
            [row] = (await sup.get("/api/review/live")).json()["items"]
            assert row["waiting_s"] is None
            await asyncio.sleep(1.1)
            await vi.say("Any news?")
            [row] = (await sup.get("/api/review/live")).json()["items"]
            assert row["waiting_s"] is not None and row["waiting_s"] < row["age_s"]


async def test_a_reply_in_english_in_a_chat_in_another_language_is_coached_in_english(
    redis_db: str,
) -> None:
    async with running_with_coach(redis_db) as srv:
        ag, vi, conv = await start_chat(srv, redis_db, lang="sr")
        await ag.send(type="draft", conversation=conv, draft_id=1,
                      text="Calm down, I don't know, that's not my job.")  # fmt: skip
        shown = await ag.expect("coach", conversation=conv, draft_id=1)
        assert {f["category"] for f in shown["flags"]} == {"dismissive", "dont_know", "not_my_job"}
        assert "let me find out for you" in [s for f in shown["flags"] for s in f["suggestions"]]
        # In the chat's own language as before.
        await ag.send(type="draft", conversation=conv, draft_id=2, text="Не знам.")
        shown = await ag.expect("coach", conversation=conv, draft_id=2)
        assert [f["category"] for f in shown["flags"]] == ["dont_know"]
        assert shown["flags"][0]["message"][0] in "АБВГДЂЕЖЗИЈКЛЉМНЊОПРСТЋУФХЦЧЏШ"
        # And the message sent is recorded with its flags.
        ack = await ag.say("I don't know.", conversation=conv)
        checked = await ag.expect("coach_checked", ref=ack["ref"])
        assert [f["category"] for f in checked["flags"]] == ["dont_know"]
        await close_all(ag, vi)


async def test_a_chat_closed_for_a_gone_visitor_brings_the_agent_no_closing_nudge(
    redis_db: str,
) -> None:
    async with running_with_coach(redis_db, visitor_gone_close_s=3.0) as srv:
        ag, vi, conv = await start_chat(srv, redis_db)
        await ag.say("Hello Marko, let me check your parcel.", conversation=conv)
        await vi.close()
        closed = await ag.expect("closed", conversation=conv, timeout=15)
        assert closed["reason"] == "timeout"
        # Ana did not close it: nothing about thanking the customer at the close.
        assert [n for n in await ag.quiet("nudge", within=2.0) if n["conversation"] == conv] == []
        async with await supervisor_http(srv, redis_db) as sup:
            card = (await sup.get("/api/review/scorecards", params={"agent": "ana"})).json()
            assert card["agents"][0]["messages"] == 1
        await ag.close()
