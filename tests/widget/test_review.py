"""The supervisor pages (/review) in Chromium.

Transcripts are checked against the real server. The review API answers are also served
from the documented shapes of docs/coaching.md (``page.route``), so the pages' rendering
of flags, scorecards, rule quality and the live monitor is pinned down; the same flows
against the real server are expected to fail until its review API lands.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.async_api import expect

from tests.widget.conftest import Site
from tests.widget.support import open_shop, open_widget, write

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(90)]

XSS = "<img src=x onerror=alert(1)>"
CONV = "c_review0001"

LIST = {"items": [{"conversation": CONV, "agent": "agent1", "agent_name": "Jelena",
                   "lang": "en", "site": "demo", "started_at": "2026-11-20T10:00:00Z",
                   "closed_at": "2026-11-20T10:09:00Z",
                   "csat": 2, "flags": {"total": 4, "count": 2, "open": 2, "worst": "warning",
                                        "categories": ["dont_know", "not_my_job"]}}],
        "page": 1, "per_page": 50, "total": 1}
TRANSCRIPT = {
    "conversation": CONV, "agent": "agent1", "agent_name": "Jelena",
    "visitor": {"id": "v_1", "name": "Ana"},
    "lang": "en", "site": "demo", "csat": 2,
    "events": [
        {"type": "message", "conversation": CONV, "seq": "1-0", "ts": 1763632800000, "id": "m1",
         "from": {"role": "visitor", "id": "v_1", "name": "Ana"},
         "text": "I called three times already! " + XSS},
        {"type": "message", "conversation": CONV, "seq": "2-0", "ts": 1763632860000, "id": "a1",
         "from": {"role": "agent", "id": "agent1", "name": "Jelena"},
         "text": "I don't know, that's not my job."},
    ],
    "flags": [
        {"id": "f1", "seq": "2-0", "rule": "en.dont_know.i_dont_know", "category": "dont_know",
         "severity": "warning", "start": 0, "end": 12, "text": "I don't know",
         "message": "Say what you will do instead.", "suggestions": ["Let me find out for you"],
         "outcome": "ignored", "override": False, "review": None},
        {"id": "f2", "seq": "2-0", "rule": "en.not_my_job.not_my_job", "category": "not_my_job",
         "severity": "warning", "start": 14, "end": 31, "text": "that's not my job",
         "message": "Own the request.", "suggestions": ["I'll make sure the right team handles it"],
         "outcome": "ignored", "override": False, "review": None},
    ],
    "cues": [{"seq": "1-0", "start": 2, "end": 28, "category": "repeat_contact",
              "text": "called three times already"}],
    "scripts": [], "nudges": [], "timeline": [],
}
DAYS = ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]
SCORECARDS = {"items": [{
    "agent": "agent1", "name": "Jelena", "messages": 400, "flags_raised": 20,
    "flags_per_100_total": 5.0,
    "flags_per_100": {"dont_know": 3.25, "not_my_job": 1.25, "blame": 0.5},
    "outcomes": {"applied": 12, "ignored": 5, "overridden": 1, "not_seen": 2},
    "outcome_shares": {"applied": 0.6, "ignored": 0.25, "overridden": 0.05, "not_seen": 0.1},
    "applied_share": 0.6, "first_response_s": 38, "handling_s": 420, "csat": 4.3,
    "days": [{"date": d, "messages": 80 + i, "flags_per_100": {
        "dont_know": 5 - i, "not_my_job": 2 - i * 0.3, "blame": 0.5 + (i % 2) * 0.4},
        "applied_share": 0.4 + i * 0.06, "first_response_s": 60 - i * 6, "handling_s": 400,
        "csat": 3.8 + i * 0.12} for i, d in enumerate(DAYS)]}]}
RULE_QUALITY = [{"rule": "en.dismissive.calm_down", "fires": 40, "false_alarms": 12, "rate": 0.3},
                {"rule": "en.dont_know.i_dont_know", "fires": 120, "false_alarms": 6, "rate": 0.05},
                {"rule": "en.blame.you_should_have", "fires": 9, "false_alarms": 0, "rate": 0.0}]
LIVE = {"items": [{"conversation": CONV, "agent": {"id": "agent1", "name": "Jelena"},
                   "visitor": {"id": "v_1", "name": "Ana"}, "waiting_s": 95,
                   "last_cue": {"category": "frustration", "text": "this is a disgrace"},
                   "last_flag": {"category": "blame", "text": "you should have"}},
                  {"conversation": "c_review0002", "agent": "agent1", "agent_name": "Jelena",
                   "visitor": {"id": "v_2", "name": "Ivo"}, "preview": "Thanks, that helps",
                   "age_s": 600, "waiting_s": None}]}


async def login(page: Any, site: Site, name: str = "supervisor", hash_: str = "") -> None:
    await page.goto(site.base + "/review" + hash_)
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password").fill(site.accounts[name])
    await page.get_by_role("button", name="Log in").click()


class ReviewApi:
    """The review API of docs/coaching.md, answered from the fixtures above."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []

    async def handle(self, route: Any) -> None:
        request = route.request
        url = urlparse(request.url)
        body = request.post_data_json if request.method == "POST" else None
        self.requests.append((request.method, url.path + ("?" + url.query if url.query else ""),
                              body))
        path = url.path
        if path == "/api/review/conversations":
            data: Any = LIST
        elif path == f"/api/review/conversations/{CONV}":
            data = TRANSCRIPT
        elif path.startswith("/api/review/flags/"):
            data = {"ok": True}
        elif path == "/api/review/scorecards":
            data = SCORECARDS
        elif path == "/api/review/rule-quality":
            data = RULE_QUALITY
        elif path == "/api/review/live":
            data = LIVE
        else:
            await route.fulfill(status=404, json={"code": "not_found", "message": path})
            return
        await route.fulfill(status=200, content_type="application/json", body=json.dumps(data))

    def queries(self, path: str) -> list[dict[str, list[str]]]:
        return [parse_qs(urlparse(p).query) for m, p, _ in self.requests
                if m == "GET" and urlparse(p).path == path]

    async def last_query(self, path: str, **expected: list[str]) -> dict[str, list[str]]:
        """The last query of `path` once it has the `expected` parameters.

        The page draws its frame (form, note) before its request reaches the route handler,
        and an earlier unfiltered load may be answered last, so wait up to 5 s for it.
        """
        for _ in range(50):
            asked = self.queries(path)
            if asked and all(asked[-1].get(k) == v for k, v in expected.items()):
                return asked[-1]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no query of {path} with {expected}: {self.queries(path)}")


SUPERVISOR_WELCOME = {"v": 1, "type": "welcome", "role": "supervisor",
                      "user": {"id": "supervisor", "name": "Ana"}, "agents_online": 1,
                      "conversations": []}


async def fake_supervisor_socket(page: Any, site: Site,
                                 answer: Callable[[dict[str, Any]], list[dict[str, Any]]],
                                 sent: list[dict[str, Any]] | None = None) -> None:
    """Stand in for /ws/agent: welcome the supervisor, then send what ``answer`` gives for
    each later frame; every frame the page sends is kept in ``sent``."""
    def on_socket(ws: Any) -> None:
        def on_message(raw: str | bytes) -> None:
            frame = json.loads(raw)
            if sent is not None:
                sent.append(frame)
            for reply in [SUPERVISOR_WELCOME] if frame["type"] == "hello" else answer(frame):
                ws.send(json.dumps(reply))
        ws.on_message(on_message)

    await page.route_web_socket(site.ws + "/ws/agent", on_socket)


async def review_page(site: Site, new_page: Any, hash_: str = "") -> tuple[Any, ReviewApi]:
    page = await new_page(width=1280, height=900)
    api = ReviewApi()
    await page.route(site.base + "/api/review/**", api.handle)
    await login(page, site, hash_=hash_)
    return page, api


# ------------------------------------------------------------------ real server



async def start_chat(
    site: Site, new_page: Any, agent_name: Any, first: str
) -> tuple[Any, Any, str]:
    """An agent online and a visitor on the shop who wrote ``first``; returns both and the chat."""
    agent = await site.agent_client(await agent_name())
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    await write(shop, first)
    conv = (await agent.expect("assignment", timeout=10))["conversation"]
    return agent, shop, str(conv)

async def test_transcript_shows_visitor_markup_as_text(site: Site, new_page: Any,
                                                       agent_name: Any) -> None:
    agent, shop, conv = await start_chat(site, new_page, agent_name, XSS)
    await agent.say("Sorry, I cannot show pictures here.", conversation=conv)
    page = await new_page()
    await login(page, site)
    await page.locator(f"[data-conv='{conv}'] a").click()
    messages = page.locator(".transcript .msg .text")
    await expect(messages).to_have_text([XSS, "Sorry, I cannot show pictures here."],
                                        timeout=10_000)
    assert await page.locator(".transcript img").count() == 0
    await page.wait_for_timeout(300)
    assert page.watched.dialogs == [] and page.watched.errors == []
    await agent.close()


async def test_agents_cannot_use_the_review_pages(site: Site, new_page: Any,
                                                  agent_name: Any) -> None:
    name = await agent_name()
    page = await new_page()
    await login(page, site, name)
    await expect(page.locator("#login-form .error")).to_have_text(
        "The review pages are for supervisors.", timeout=5_000)
    assert await page.locator("#page").is_hidden()


async def test_supervisor_finds_the_flagged_transcript_and_marks_a_false_alarm(
        site: Site, new_page: Any, agent_name: Any) -> None:
    agent, shop, conv = await start_chat(site, new_page, agent_name, "Where is my order?")
    await agent.say("I don't know, that's not my job.", conversation=conv)
    page = await new_page()
    await login(page, site, hash_="#/conversations?has_flags=true")
    await page.locator(f"[data-conv='{conv}']").click(timeout=10_000)
    await expect(page.locator(".transcript mark")).to_have_count(2, timeout=10_000)
    first = page.locator(".flag-list li").first
    await first.get_by_role("button", name="False alarm").click()
    await expect(first.locator(".review-status")).to_have_text("Review: false alarm")
    await agent.close()


async def test_watch_shows_the_conversation_so_far_once_then_live(
        site: Site, new_page: Any, agent_name: Any) -> None:
    agent, shop, conv = await start_chat(site, new_page, agent_name, "Where is my order?")
    await agent.say("Let me check that for you.", conversation=conv)
    page = await new_page(width=1280, height=900)
    await login(page, site, hash_="#/live")
    row = page.locator(f"tr[data-conv='{conv}']")
    await row.get_by_role("button", name="Watch").click(timeout=10_000)
    lines = page.locator(".live-watch .transcript li")
    await expect(lines.filter(has_text="Let me check that for you.")).to_have_count(1,
                                                                                   timeout=10_000)
    await write(shop, "Thanks, it is order 4411.")
    await expect(lines.filter(has_text="order 4411")).to_have_count(1, timeout=10_000)
    said = page.locator(".live-watch .transcript .msg .text")
    assert await said.all_inner_texts() == [
        "Where is my order?", "Let me check that for you.", "Thanks, it is order 4411."]
    # Events are told in words; receipts are not told at all.
    bare = [t for t in await lines.all_inner_texts() if t.strip() in ("read", "assigned")]
    assert bare == []
    # Watching it again starts over with the whole conversation, each line once.
    await row.get_by_role("button", name="Watch").click()
    await expect(lines.filter(has_text="order 4411")).to_have_count(1, timeout=10_000)
    await expect(lines.filter(has_text="Where is my order?")).to_have_count(1)
    assert page.watched.errors == []
    await agent.close()


async def test_transcript_lists_the_scripts_offered_with_their_text(
        site: Site, new_page: Any, agent_name: Any) -> None:
    agent, shop, conv = await start_chat(site, new_page, agent_name, "Hello?")
    await write(shop, "I have called three times already about this!")
    script = await agent.expect("script", timeout=10)
    assert script["category"] == "repeat_contact" and script["scripts"]
    page = await new_page(width=1280, height=900)
    await login(page, site, hash_=f"#/conversation/{conv}")
    notes = page.locator(".transcript-view .note")
    await expect(notes.filter(has_text="repeat contact: ")).to_have_text(
        ["repeat contact: " + " / ".join(script["scripts"])], timeout=10_000)
    for note in await notes.all_inner_texts():
        assert not note.rstrip().endswith(":"), note
    await agent.close()


async def test_applied_suggestion_is_listed_but_not_underlined_in_the_sent_text(
        site: Site, new_page: Any, agent_name: Any) -> None:
    agent, shop, conv = await start_chat(site, new_page, agent_name, "Where is my order?")
    await agent.send(type="draft", conversation=conv, draft_id=1,
                     text="I don't know, that's not my job.")
    shown = await agent.expect("coach", conversation=conv, timeout=10)
    assert "Let me find out for you" in shown["flags"][0]["suggestions"]
    ack = await agent.say("Let me find out for you.", conversation=conv)
    assert (await agent.expect("coach_checked", ref=ack["ref"]))["outcome"] == "applied"
    page = await new_page(width=1280, height=900)
    await login(page, site, hash_=f"#/conversation/{conv}")
    sent = page.locator(".transcript .msg.mine .text")
    await expect(sent).to_have_text(["Let me find out for you."], timeout=10_000)
    outcomes = page.locator(".flag-list li .outcome")
    await expect(outcomes.first).to_have_text("applied", timeout=10_000)
    assert set(await outcomes.all_inner_texts()) == {"applied"}
    assert await page.locator(".transcript mark").count() == 0
    await agent.close()


# ------------------------------------------------------------------ documented API shapes


async def test_conversation_filters_reach_the_review_api(site: Site, new_page: Any) -> None:
    page, api = await review_page(site, new_page)
    await expect(page.locator("tbody tr[data-conv]")).to_have_count(1, timeout=10_000)
    await page.get_by_label("Category").select_option("not_my_job")
    await page.get_by_label("Severity").select_option("warning")
    await page.get_by_label("Language").select_option("sr")
    await page.get_by_label("Suggestion ignored").check()
    await page.get_by_role("button", name="Apply").click()
    await expect(page).to_have_url(re.compile("category=not_my_job"), timeout=5_000)
    await expect(page.locator("tbody tr[data-conv]")).to_have_count(1, timeout=10_000)
    last = await api.last_query("/api/review/conversations", category=["not_my_job"])
    assert last["category"] == ["not_my_job"] and last["severity"] == ["warning"]
    assert last["lang"] == ["sr"] and last["flag_ignored"] == ["true"]


async def test_agent_filter_picks_agents_by_name_and_filters_by_id(site: Site,
                                                                   new_page: Any) -> None:
    # The names come from the server's /api/agents (the demo's agent1 is Jelena).
    page, api = await review_page(site, new_page)
    agent = page.get_by_label("Agent")
    await expect(agent.locator("option", has_text="Jelena")).to_have_count(1, timeout=10_000)
    await agent.select_option(label="Jelena")
    await page.get_by_role("button", name="Apply").click()
    await expect(page).to_have_url(re.compile("agent=agent1"), timeout=5_000)
    await expect(page.locator("tbody tr[data-conv]")).to_have_count(1, timeout=10_000)
    await api.last_query("/api/review/conversations", agent=["agent1"])
    # The filter kept in the address shows as the name again.
    await page.reload()
    selected = page.get_by_label("Agent").locator("option:checked")
    await expect(selected).to_have_text("Jelena", timeout=10_000)
    await page.goto(site.base + "/review#/scorecards")
    await page.get_by_label("Agent").select_option(label="Marko")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator(".scorecard")).to_have_count(1, timeout=10_000)
    await api.last_query("/api/review/scorecards", agent=["agent2"])


async def test_agent_filter_tells_agents_with_one_name_apart(site: Site, new_page: Any) -> None:
    agents = {"items": [
        {"id": "marko.p", "name": "Marko", "role": "agent"},
        {"id": "agent1", "name": "Jelena", "role": "agent"},
        {"id": "marko.k", "name": "Marko", "role": "agent"},
        {"id": "boss", "name": "Ana", "role": "supervisor"}]}
    page = await new_page(width=1280, height=900)
    await page.route(site.base + "/api/review/**", ReviewApi().handle)
    await page.route(site.base + "/api/agents", lambda route: route.fulfill(json=agents))
    await login(page, site, hash_="#/conversations?agent=gone.account")
    options = page.get_by_label("Agent").locator("option")
    await expect(options).to_have_text(
        ["any", "Jelena", "Marko (marko.k)", "Marko (marko.p)", "Ana", "gone.account"],
        timeout=10_000)
    assert await page.get_by_label("Agent").input_value() == "gone.account"
    group = page.get_by_label("Agent").locator("optgroup")
    assert await group.get_attribute("label") == "Supervisors"
    await expect(group.locator("option")).to_have_text(["Ana"])


async def test_list_and_transcript_name_the_agent_not_the_account(site: Site,
                                                                   new_page: Any) -> None:
    page, _ = await review_page(site, new_page)
    row = page.locator(f"tbody tr[data-conv='{CONV}']")
    agent = row.locator("td").nth(1)
    await expect(agent).to_have_text("Jelena", timeout=10_000)
    await expect(agent).to_have_attribute("title", "agent1")
    await row.click()
    await expect(page.locator(".page > p").nth(1)).to_contain_text("Agent: Jelena",
                                                                   timeout=10_000)


TRANSFERRED = [{"id": "agent1", "name": "Jelena"}, {"id": "agent2", "name": "Marko"}]


async def test_a_transferred_chat_credits_each_flag_to_its_sender(
        site: Site, new_page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Jelena's flagged message, then the chat went to Marko, who holds it now.
    monkeypatch.setattr(sys.modules[__name__], "LIST", {**LIST, "items": [
        {**LIST["items"][0], "agent": "agent2", "agent_name": "Marko", "agents": TRANSFERRED}]})
    monkeypatch.setattr(sys.modules[__name__], "TRANSCRIPT", {
        **TRANSCRIPT, "agent": "agent2", "agent_name": "Marko", "agents": TRANSFERRED,
        "flags": [{**f, "agent": "agent1", "agent_name": "Jelena"} for f in TRANSCRIPT["flags"]]})
    page, _ = await review_page(site, new_page)
    row = page.locator(f"tbody tr[data-conv='{CONV}']")
    await expect(row.locator("td").nth(1)).to_have_text("Jelena → Marko", timeout=10_000)
    await row.click()
    await expect(page.locator(".page > p").nth(1)).to_contain_text("Agents: Jelena → Marko",
                                                                   timeout=10_000)
    flag = page.locator(".flag-list li[data-flag='f1']")
    await expect(flag).to_contain_text("Sent by Jelena: ignored")


async def test_transcript_shows_the_rating_comment_and_the_whispers_in_their_place(
        site: Site, new_page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    whisper = {"kind": "whisper", "ts": 1763632830000, "from": {"id": "sanja", "name": "Sanja"},
               "text": "Apologise first."}
    monkeypatch.setattr(sys.modules[__name__], "TRANSCRIPT", {
        **TRANSCRIPT, "csat": 1, "csat_comment": "Nobody said sorry.", "whispers": [whisper]})
    page, _ = await review_page(site, new_page, f"#/conversation/{CONV}")
    await expect(page.locator(".csat-comment")).to_have_text(
        "The customer's comment with the rating: Nobody said sorry.", timeout=10_000)
    lines = page.locator(".transcript > li")
    await expect(lines).to_have_count(4)  # the day, the message, the whisper, the reply
    await expect(lines.nth(2)).to_have_class("whisper")
    await expect(lines.nth(2)).to_contain_text("Sanja whispered to the agent")
    await expect(lines.nth(2)).to_contain_text("not shown to the visitor")
    await expect(lines.nth(2)).to_contain_text("Apologise first.")


async def test_category_filter_offers_flags_and_customer_cues_the_list_shows(
        site: Site, new_page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    item = {**LIST["items"][0], "cues": ["frustration"]}
    monkeypatch.setattr(sys.modules[__name__], "LIST", {**LIST, "items": [item]})
    page, api = await review_page(site, new_page)
    row = page.locator(f"tbody tr[data-conv='{CONV}']")
    await expect(row.locator("td.categories")).to_have_text(
        "don't know, not my job, frustration (customer)", timeout=10_000)
    groups = page.get_by_label("Category").locator("optgroup")
    await expect(groups.nth(0).locator("option")).to_have_count(8)
    await expect(groups.nth(1).locator("option")).to_have_text(
        ["frustration", "repeat contact", "escalation request"])
    category = page.get_by_label("Category")
    assert await category.locator("option[value='upsell_when_upset']").count() == 0
    await category.select_option("frustration")
    await page.get_by_role("button", name="Apply").click()
    await api.last_query("/api/review/conversations", category=["frustration"])


async def test_list_counts_all_flags_and_those_left_to_review(site: Site,
                                                               new_page: Any) -> None:
    page, _ = await review_page(site, new_page)
    flags = page.locator(f"tbody tr[data-conv='{CONV}'] td.flags")
    await expect(flags).to_have_text("4 flags, 2 to review warning", timeout=10_000)
    # A cell of its row, not the console's list of flags (which shares the class name).
    assert await flags.evaluate("el => getComputedStyle(el).display") == "table-cell"


async def test_transcript_highlights_flags_and_marks_a_false_alarm(site: Site, new_page: Any,
                                                                   out_dir: Path) -> None:
    page, api = await review_page(site, new_page, f"#/conversation/{CONV}")
    marks = page.locator(".transcript mark")
    await expect(marks).to_have_text(["called three times already", "I don't know",
                                      "that's not my job"], timeout=10_000)
    assert await page.locator(".transcript img").count() == 0
    flag = page.locator(".flag-list li[data-flag='f1']")
    await expect(flag).to_contain_text("Let me find out for you")
    await expect(flag.locator(".outcome")).to_have_text("ignored")
    await flag.get_by_role("button", name="False alarm").click()
    await expect(flag.locator(".review-status")).to_have_text("Review: false alarm")
    await expect(page.get_by_role("heading", name="Flags")).to_have_text("Flags (2, 1 to review)")
    posted = [r for r in api.requests if r[0] == "POST"]
    assert posted == [("POST", "/api/review/flags/f1", {"status": "false_alarm", "note": ""})]
    await page.screenshot(path=out_dir / "review-transcript.png", full_page=True)
    assert page.watched.dialogs == []


async def test_scorecards_are_drawn_as_svg(site: Site, new_page: Any, out_dir: Path) -> None:
    page, _ = await review_page(site, new_page, "#/scorecards")
    card = page.locator(".scorecard[data-agent='agent1']")
    await expect(card.locator("h2")).to_have_text("Jelena", timeout=10_000)
    await expect(card.locator(".figures")).to_contain_text("60%")
    charts = card.locator("svg.chart")
    await expect(charts).to_have_count(4)
    assert await charts.first.locator("path").count() == 3  # one line per category
    label = await charts.first.get_attribute("aria-label")
    assert label is not None and "don't know 1" in label
    await card.screenshot(path=out_dir / "review-scorecard.png")


async def test_scorecard_says_what_its_flag_figures_count(site: Site, new_page: Any) -> None:
    page, _ = await review_page(site, new_page, "#/scorecards")
    card = page.locator(".scorecard[data-agent='agent1']")
    per100 = card.locator(".figures > div").filter(has_text="flags per 100 messages")
    await expect(per100).to_contain_text("5", timeout=10_000)
    title = await per100.get_attribute("title")
    assert title and "applied, ignored, overridden or not seen" in title
    assert "conversation list" in title
    did = card.locator(".outcomes")
    await expect(did).to_contain_text("What the agent did with the 20 flags raised")
    await expect(did.locator(".outcome")).to_have_text(
        ["applied 60% (12)", "ignored 25% (5)", "overridden 5% (1)", "not seen 10% (2)"])
    for outcome in await did.locator(".outcome").all():
        assert await outcome.get_attribute("title")


QUIET_DAYS = [{"date": d, "messages": 0, "flags_per_100": {}, "applied_share": None,
               "first_response_s": None, "handling_s": None, "csat": None} for d in DAYS]
ZERO_DAYS = [{"date": d, "messages": 30, "flags_per_100": {"dont_know": 0.0},
              "applied_share": 0.0, "first_response_s": 0, "handling_s": 400, "csat": None}
             for d in DAYS]
SPARSE = {"items": [
    SCORECARDS["items"][0],
    {"agent": "quiet", "name": "Marko", "messages": 0, "flags_raised": 0, "flags_per_100": {},
     "outcomes": {}, "outcome_shares": None, "days": QUIET_DAYS},
    {"agent": "zero", "name": "Ivana", "messages": 150, "flags_raised": 0,
     "flags_per_100_total": 0.0, "flags_per_100": {"dont_know": 0.0}, "outcomes": {},
     "outcome_shares": None, "days": ZERO_DAYS}]}


async def test_charts_say_when_there_is_no_data_and_label_their_scale_in_round_numbers(
        site: Site, new_page: Any, out_dir: Path) -> None:
    page = await new_page(width=1280, height=1400)
    await page.route(site.base + "/api/review/**", ReviewApi().handle)
    await page.route(site.base + "/api/review/scorecards*",
                     lambda route: route.fulfill(json=SPARSE))
    await login(page, site, hash_="#/scorecards")
    cards = page.locator(".scorecard")
    await expect(cards).to_have_count(3, timeout=10_000)

    def ticks(chart: Any) -> Any:
        return chart.locator("text.tick")

    # With data, the lines and points are drawn as before, over a scale in round steps.
    busy = cards.nth(0).locator("svg.chart")
    await expect(busy.first.locator("path")).to_have_count(3)
    await expect(busy.first.locator("circle")).to_have_count(15)
    await expect(ticks(busy.nth(0))).to_have_text(["0", "1", "2", "3", "4", "5"])
    await expect(ticks(busy.nth(1))).to_have_text(["0", "20", "40", "60", "80", "100"])
    await expect(ticks(busy.nth(2))).to_have_text(["0", "20", "40", "60"])
    await expect(ticks(busy.nth(3))).to_have_text(["0", "1", "2", "3", "4", "5"])
    assert await busy.locator("[data-empty]").count() == 0

    # Nothing in the period: each chart says so, with no scale and no line.
    quiet = cards.nth(1).locator("svg.chart")
    await expect(quiet).to_have_count(4)
    await expect(quiet.locator(".no-data")).to_have_text(
        ["No flags in this period"] + ["No data in this period"] * 3)
    assert await quiet.locator("text.tick, path, circle").count() == 0
    assert await quiet.nth(3).get_attribute("aria-label") == "CSAT: no data in this period"

    # All zero: the line lies on 0 under a scale of whole numbers, not 0, 0.3, 0.5…
    zero = cards.nth(2).locator("svg.chart")
    await expect(ticks(zero.nth(0))).to_have_text(["0", "1"])
    await expect(zero.nth(0).locator("circle")).to_have_count(5)
    await expect(ticks(zero.nth(1))).to_have_text(["0", "20", "40", "60", "80", "100"])
    await expect(ticks(zero.nth(2))).to_have_text(["0", "1"])
    await expect(zero.nth(3).locator(".no-data")).to_have_text("No data in this period")
    await cards.nth(2).screenshot(path=out_dir / "review-scorecard-zero.png")
    await cards.nth(1).screenshot(path=out_dir / "review-scorecard-empty.png")
    assert page.watched.errors == []


async def test_scorecard_days_without_activity_are_gaps_not_zeros(
        site: Site, new_page: Any) -> None:
    busy = {"messages": 40, "flags_per_100": {"dont_know": 5.0}, "applied_share": 0.5,
            "first_response_s": 30, "handling_s": 300, "csat": 4}
    quiet = {"messages": 0, "flags_per_100": None, "flags_per_100_total": None,
             "applied_share": None, "first_response_s": None, "handling_s": None, "csat": None}
    days = [{"day": d, **(quiet if i in (2, 4) else busy)} for i, d in enumerate(DAYS)]
    card = {"agents": [{**SCORECARDS["items"][0], "flags_per_100": {"dont_know": 5.0},
                        "days": days}]}
    page = await new_page(width=1280, height=1400)
    await page.route(site.base + "/api/review/**", ReviewApi().handle)
    await page.route(site.base + "/api/review/scorecards*", lambda route: route.fulfill(json=card))
    await login(page, site, hash_="#/scorecards")
    charts = page.locator(".scorecard").first.locator("svg.chart")
    await expect(charts).to_have_count(4, timeout=10_000)
    for i in range(4):
        chart = charts.nth(i)
        # Days 1, 2 and 4 drawn: a line over the first two, a dot on the fourth, nothing at 0.
        await expect(chart.locator("circle")).to_have_count(3)
        d = await chart.locator("path").get_attribute("d") or ""
        assert (d.count("M"), d.count("L")) == (2, 1), d
    assert page.watched.errors == []


async def test_a_period_that_ends_before_it_starts_is_said_plainly(
        site: Site, new_page: Any) -> None:
    said = "from 2026-12-06 is after to 2026-12-05 (today, UTC, as no to was given)"
    page = await new_page()
    await page.route(site.base + "/api/review/**", ReviewApi().handle)
    await page.route(site.base + "/api/review/scorecards*", lambda route: route.fulfill(
        status=400, json={"code": "invalid_request", "message": said}))
    await login(page, site, hash_="#/scorecards?from=2026-12-06")
    await expect(page.get_by_role("alert")).to_have_text(
        "Check the period: " + said + ".", timeout=10_000)


US_DATE = re.compile(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b")


async def in_belgrade(page: Any) -> None:
    """The page's clock in Belgrade (UTC+1 in November), as our supervisors' is."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Emulation.setTimezoneOverride", {"timezoneId": "Europe/Belgrade"})


async def test_dates_read_day_month_year_in_local_time_on_every_review_page(
        site: Site, new_page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A day that spans midnight in Belgrade: the transcript says when each day begins.
    late = {**TRANSCRIPT["events"][1], "seq": "3-0", "id": "a2", "text": "Good night.",
            "ts": 1763679600000}  # 2025-11-20T23:00:00Z, 21 Nov 00:00 in Belgrade
    monkeypatch.setattr(sys.modules[__name__], "TRANSCRIPT", {
        **TRANSCRIPT, "events": [*TRANSCRIPT["events"], late]})
    page = await new_page(width=1280, height=900)
    await in_belgrade(page)
    await page.route(site.base + "/api/review/**", ReviewApi().handle)
    await login(page, site)
    row = page.locator(f"tbody tr[data-conv='{CONV}']")
    # "started_at": "2026-11-20T10:00:00Z"
    await expect(row.locator("td").nth(4)).to_have_text("20 Nov 2026 11:00", timeout=10_000)
    assert not US_DATE.search(await page.locator("#page").inner_text())

    await page.evaluate(f"location.hash = '#/conversation/{CONV}'")
    days = page.locator(".transcript > li.day")
    await expect(days).to_have_text(["20 Nov 2025", "21 Nov 2025"], timeout=10_000)
    lines = page.locator(".transcript > li")
    await expect(lines.nth(3)).to_have_text("21 Nov 2025")
    await expect(lines.nth(4).locator(".time")).to_have_text("00:00")
    assert not US_DATE.search(await page.locator("#page").inner_text())

    await page.evaluate("location.hash = '#/scorecards'")
    chart = page.locator(".scorecard").first.locator("svg.chart").first
    await expect(chart.locator("text:not(.tick)")).to_have_text(
        ["16 Nov", "17 Nov", "18 Nov", "19 Nov", "20 Nov"], timeout=10_000)
    point = chart.locator("circle title").first
    await expect(point).to_have_text(re.compile(r"^\S.*, 16 Nov 2026: [\d.]+$"))
    assert not US_DATE.search(await page.locator("#page").inner_text())
    assert page.watched.errors == []


async def test_rule_quality_lists_the_worst_rules_first(site: Site, new_page: Any) -> None:
    page, api = await review_page(site, new_page, "#/rules")
    rows = page.locator("tbody tr[data-rule]")
    await expect(rows).to_have_count(3, timeout=10_000)
    await expect(rows.first).to_contain_text("en.dismissive.calm_down")
    await expect(rows.first).to_contain_text("30%")
    await expect(rows.last.locator("td")).to_have_text(
        ["en.blame.you_should_have", "9", "0", "0%"])
    fires = page.get_by_role("columnheader", name="Fires")
    assert "whatever the agent did" in (await fires.get_attribute("title") or "")
    # A period goes to the API and stays in the address.
    await page.get_by_label("From").fill("2026-11-01")
    await page.get_by_label("To").fill("2026-11-30")
    await page.get_by_role("button", name="Apply").click()
    await expect(page).to_have_url(re.compile(r"#/rules\?from=2026-11-01&to=2026-11-30"))
    await expect(page.locator(".note")).to_contain_text("in the period", timeout=10_000)
    asked = await api.last_query("/api/review/rule-quality", to=["2026-11-30"])
    assert asked == {"from": ["2026-11-01"], "to": ["2026-11-30"]}


async def test_live_waiting_is_the_unanswered_wait_not_the_age(site: Site,
                                                               new_page: Any) -> None:
    page, _ = await review_page(site, new_page, "#/live")
    await expect(page.locator(f"tr[data-conv='{CONV}'] td.waiting")).to_have_text(
        "1 min", timeout=10_000)
    # A chat is told apart by its visitor and their first words; the id is there, small.
    await expect(page.locator("tr[data-conv='c_review0002'] td")).to_contain_text(
        ["Ivo", "Jelena", "answered"])
    first = page.locator("tr[data-conv='c_review0002'] td.conv")
    await expect(first.get_by_role("link")).to_have_text("Ivo")
    await expect(first.locator(".preview")).to_have_text("Thanks, that helps")
    await expect(first.locator(".conv-id")).to_have_text("c_review0002")


async def test_live_shows_a_disconnected_agent_and_until_when_the_chats_are_held(
        site: Site, new_page: Any) -> None:
    held = 1_764_500_000_000
    live = {"items": [
        {"conversation": CONV, "agent": "agent1", "agent_name": "Jelena",
         "agent_status": "disconnected", "held_until": held,
         "visitor": {"id": "v_1", "name": "Ana"}, "waiting_s": 30},
        {"conversation": "c_review0002", "agent": "agent2", "agent_name": "Marko",
         "agent_status": "online", "held_until": None,
         "visitor": {"id": "v_2", "name": "Ivo"}, "waiting_s": None}]}
    agents = {"items": [
        {"id": "agent1", "name": "Jelena", "role": "agent", "status": "disconnected",
         "held_until": held, "open": 1, "capacity": 3, "languages": ["en", "sr"]},
        {"id": "agent2", "name": "Marko", "role": "agent", "status": "online",
         "held_until": None, "open": 1, "capacity": 3, "languages": ["en", "sl"]},
        {"id": "agent3", "name": "Ivana", "role": "agent", "status": "offline",
         "held_until": None, "open": 0, "capacity": 3, "languages": ["hr"]},
        {"id": "supervisor", "name": "Ana", "role": "supervisor", "status": "offline",
         "held_until": None, "open": 0, "capacity": 3, "languages": ["en"]}]}
    page = await new_page(width=1280, height=900)
    await page.route(site.base + "/api/review/**", ReviewApi().handle)
    await page.route(site.base + "/api/review/live", lambda route: route.fulfill(json=live))
    await page.route(site.base + "/api/agents", lambda route: route.fulfill(json=agents))
    await login(page, site, hash_="#/live")
    await expect(page.locator(f"tr[data-conv='{CONV}']")).to_have_count(1, timeout=10_000)
    until = await page.evaluate(f"TL.clock({held})")
    gone = f"Disconnected — chats held until {until}"
    await expect(page.locator(f"tr[data-conv='{CONV}'] td.agent")).to_have_text(
        f"Jelena · {gone}")
    await expect(page.locator("tr[data-conv='c_review0002'] td.agent")).to_have_text("Marko")
    rows = page.get_by_role("table", name="Agents").locator("tbody tr")
    await expect(rows).to_have_count(3)  # a supervisor holding no chat is not listed
    await expect(rows.nth(0).locator("td")).to_have_text(["Jelena", gone, "1 of 3", "en, sr"])
    await expect(rows.nth(1).locator("td")).to_contain_text(["Marko", "Online"])
    await expect(rows.nth(2).locator("td")).to_contain_text(["Ivana", "Offline", "0 of 3"])
    assert page.watched.errors == []


async def test_live_flags_a_left_message_no_online_agent_speaks_the_language_of(
        site: Site, new_page: Any) -> None:
    live = {"items": [
        {"conversation": CONV, "status": "queued", "agent": None, "agent_name": None,
         "visitor": {"id": "v_1", "name": "Ana"}, "lang": "sr", "waiting_s": 3600,
         "left_message": True, "agents_online": 0, "no_agent_for_lang": True},
        {"conversation": "c_review0002", "status": "assigned", "agent": "agent1",
         "agent_name": "Jelena", "visitor": {"id": "v_2", "name": "Ivo"}, "lang": "en",
         "waiting_s": None, "left_message": False, "agents_online": 1,
         "no_agent_for_lang": False}]}
    page = await new_page(width=1280, height=900)
    await page.route(site.base + "/api/review/**", ReviewApi().handle)
    await page.route(site.base + "/api/review/live", lambda route: route.fulfill(json=live))
    await login(page, site, hash_="#/live")
    await expect(page.locator(f"tr[data-conv='{CONV}'] td.lang")).to_have_text(
        "sr · Left message · No agent online speaks sr", timeout=10_000)
    await expect(page.locator("tr[data-conv='c_review0002'] td.lang")).to_have_text("en")
    assert page.watched.errors == []


async def test_live_last_cue_shows_what_the_customer_said(site: Site, new_page: Any) -> None:
    said = "My parcel is two weeks late and nobody answers the phone!!!"
    live = {"items": [
        {"conversation": CONV, "status": "assigned", "agent": "agent1", "agent_name": "Jelena",
         "visitor": {"id": "v_1", "name": "Ana"}, "lang": "en", "waiting_s": 20,
         "last_cue": {"seq": "3-0", "category": "frustration", "text": "!!!", "said": said}}]}
    page = await new_page(width=1280, height=900)
    await page.route(site.base + "/api/review/**", ReviewApi().handle)
    await page.route(site.base + "/api/review/live", lambda route: route.fulfill(json=live))
    await login(page, site, hash_="#/live")
    await expect(page.locator(f"tr[data-conv='{CONV}'] td.cue")).to_have_text(
        f"frustration: “{said}”", timeout=10_000)
    assert page.watched.errors == []


async def test_live_monitor_watches_and_whispers(site: Site, new_page: Any) -> None:
    page = await new_page(width=1280, height=900)
    api = ReviewApi()
    await page.route(site.base + "/api/review/**", api.handle)
    sent: list[dict[str, Any]] = []

    def answer(frame: dict[str, Any]) -> list[dict[str, Any]]:
        if frame["type"] != "watch":
            return []
        return [{"v": 1, "type": "message", "conversation": CONV, "seq": "5-0", "ts": 1,
                 "id": "m5", "from": {"role": "visitor", "id": "v_1", "name": "Ana"},
                 "text": XSS}]

    await fake_supervisor_socket(page, site, answer, sent)
    await login(page, site, hash_="#/live")
    row = page.locator(f"tr[data-conv='{CONV}']")
    await expect(row).to_contain_text("this is a disgrace", timeout=10_000)
    await row.get_by_role("button", name="Watch").click()
    watched = page.locator(".live-watch .transcript")
    await expect(watched).to_contain_text(XSS, timeout=10_000)
    await page.get_by_label("Whisper to the agent").fill("Offer the refund now.")
    await page.get_by_role("button", name="Whisper").click()
    await page.get_by_role("button", name="Take over").click()
    await expect(page.locator("#toast")).to_contain_text("taking over")
    kinds = [(f["type"], f.get("conversation"), f.get("text")) for f in sent if f["type"] != "ping"]
    assert ("watch", CONV, None) in kinds
    assert ("whisper", CONV, "Offer the refund now.") in kinds
    assert ("take_over", CONV, None) in kinds
    assert await page.locator(".live-watch img").count() == 0


async def test_taking_a_watched_chat_over_says_so_and_leaves_no_button(
        site: Site, new_page: Any) -> None:
    page = await new_page(width=1280, height=900)
    await page.route(site.base + "/api/review/**", ReviewApi().handle)

    def answer(frame: dict[str, Any]) -> list[dict[str, Any]]:
        if frame["type"] != "take_over":
            return []
        # What the server sends the supervisor: the event, then the assignment.
        return [{"v": 1, "type": "transferred", "conversation": CONV, "seq": "6-0", "ts": 2,
                 "from_agent": {"id": "agent1", "name": "Jelena"},
                 "agent": {"id": "supervisor", "name": "Ana"}, "team": None, "note": None,
                 "taken_over": True},
                {"v": 1, "type": "assignment", "conversation": CONV,
                 "reason": "transfer", "from_agent": "agent1"}]

    await fake_supervisor_socket(page, site, answer)
    await login(page, site, hash_="#/live")
    row = page.locator(f"tr[data-conv='{CONV}']")
    await expect(row).to_contain_text("this is a disgrace", timeout=10_000)
    await row.get_by_role("button", name="Watch").click()
    panel = page.locator(".live-watch")
    await panel.get_by_role("button", name="Take over").click()
    await expect(panel).to_contain_text("You have this chat now", timeout=10_000)
    await expect(panel.get_by_role("button", name="Take over")).to_have_count(0)
    await expect(panel.locator("form.whisper")).to_be_hidden()
    await expect(panel.locator(".transcript li")).to_have_text(
        ["Ana (supervisor) took the chat over from Jelena"])


async def test_watched_chat_reads_by_speaker_and_the_whisper_box_says_it_is_private(
        site: Site, new_page: Any, out_dir: Path) -> None:
    page = await new_page(width=1280, height=900)
    await page.route(site.base + "/api/review/**", ReviewApi().handle)
    said = [({"role": "visitor", "id": "v_1", "name": "Ana"}, "My parcel is late.", 1763632800000),
            ({"role": "agent", "id": "agent1", "name": "Jelena"}, "Let me check.", 1763632860000)]
    events = [{"type": "message", "conversation": CONV, "seq": f"{i + 1}-0", "ts": ts,
               "id": f"m{i}", "from": who, "text": text}
              for i, (who, text, ts) in enumerate(said)]

    def answer(frame: dict[str, Any]) -> list[dict[str, Any]]:
        if frame["type"] != "watch":
            return []
        return [{"v": 1, "type": "watching", "conversation": CONV, "events": events,
                 "history_truncated": False}]

    await fake_supervisor_socket(page, site, answer)
    await login(page, site, hash_="#/live")
    row = page.locator(f"tr[data-conv='{CONV}']")
    await expect(row).to_have_count(1, timeout=10_000)
    await row.get_by_role("button", name="Watch").click()
    panel = page.locator(".live-watch")
    await expect(panel.get_by_role("heading")).to_have_text("Watching Jelena with Ana")
    msgs = panel.locator(".transcript .msg")
    await expect(msgs).to_have_count(2, timeout=10_000)
    times = [await page.evaluate(f"TL.clock({ts})") for _, _, ts in said]
    await expect(msgs.locator(".from")).to_have_text([f"Ana{times[0]}", f"Jelena{times[1]}"])
    await expect(msgs.locator(".text")).to_have_text(["My parcel is late.", "Let me check."])
    # The visitor on the left, the agent on the right.
    await expect(msgs.nth(0)).not_to_have_class(re.compile(r"\bmine\b"))
    await expect(msgs.nth(1)).to_have_class(re.compile(r"\bmine\b"))
    left, right = [await m.bounding_box() for m in await msgs.all()]
    assert left and right and left["x"] < right["x"]
    box = panel.get_by_role("form", name="Private to Jelena")
    await expect(box).to_contain_text("Whisper to Jelena (private)")
    whisper = box.get_by_label("Whisper to the agent")
    await expect(whisper).to_have_attribute("placeholder", re.compile("the visitor does not"))
    await whisper.fill("Offer the refund now.")
    await box.get_by_role("button", name="Whisper").click()
    await expect(panel.locator(".transcript .whisper")).to_contain_text(
        ["You whispered to Jelena"])
    await expect(panel.locator(".transcript .whisper")).to_contain_text("not shown to the visitor")
    await panel.screenshot(path=out_dir / "review-live-watch.png")
    assert page.watched.errors == []


async def test_logging_out_of_the_review_pages_ends_the_session(site: Site,
                                                                 new_page: Any) -> None:
    page, _ = await review_page(site, new_page)
    await expect(page.get_by_role("button", name="Log out")).to_be_visible(timeout=10_000)
    token = await page.evaluate("TL.session().token")
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_label("User name")).to_be_visible(timeout=10_000)
    status = await page.evaluate(
        "t => fetch('/api/agents', {headers: {Authorization: 'Bearer ' + t}}).then(r => r.status)",
        token)
    assert status == 401


async def test_the_list_names_each_chat_by_its_visitor_and_first_words(
        site: Site, new_page: Any, agent_name: Any) -> None:
    agent, shop, conv = await start_chat(site, new_page, agent_name, "Where is my order 1182?")
    await write(shop, "It was due on Monday.")
    await agent.expect("message", conversation=conv, text="It was due on Monday.", timeout=10)
    page = await new_page()
    await login(page, site)
    cell = page.locator(f"tr[data-conv='{conv}'] td.conv")
    await expect(cell.locator("a")).to_have_text(re.compile(r"^Visitor [0-9A-F]{4}$"),
                                                 timeout=10_000)
    await expect(cell.locator(".preview")).to_have_text("Where is my order 1182?")
    await expect(cell.locator(".conv-id")).to_have_text(conv)  # small, for looking it up
    await cell.locator("a").click()
    await expect(page.locator(".transcript .msg .text").first).to_have_text(
        "Where is my order 1182?", timeout=10_000)
    assert page.watched.errors == []
    await agent.close()


async def test_live_lists_a_supervisor_holding_a_chat_as_a_supervisor(
        site: Site, new_page: Any) -> None:
    agents = {"items": [
        {"id": "agent1", "name": "Jelena", "role": "agent", "status": "online",
         "held_until": None, "open": 1, "capacity": 3, "languages": ["en", "sr"]},
        {"id": "supervisor", "name": "Ana", "role": "supervisor", "status": "offline",
         "held_until": None, "open": 1, "capacity": 3, "languages": ["en"]}]}
    page = await new_page(width=1280, height=900)
    await page.route(site.base + "/api/review/**", ReviewApi().handle)
    await page.route(site.base + "/api/agents", lambda route: route.fulfill(json=agents))
    await login(page, site, hash_="#/live")
    rows = page.get_by_role("table", name="Agents").locator("tbody tr")
    await expect(rows).to_have_count(2, timeout=10_000)
    await expect(rows.nth(0).locator("td")).to_have_text(["Jelena", "Online", "1 of 3", "en, sr"])
    # Not "Offline · 1 of 3": a supervisor takes no chats from the queue.
    await expect(rows.nth(1).locator("td")).to_have_text(
        ["Ana", "Supervisor", "1 chat taken over", "en"])
    assert page.watched.errors == []


async def test_pages_say_the_server_cannot_be_reached_and_recover_by_themselves(
        site: Site, new_page: Any) -> None:
    page, _ = await review_page(site, new_page)
    await expect(page.locator(f"tr[data-conv='{CONV}']")).to_have_count(1, timeout=10_000)
    down = True

    async def network(route: Any) -> None:
        if down:
            await route.abort("connectionrefused")
        else:
            await route.fallback()

    await page.route(site.base + "/api/**", network)
    toast = page.locator("#toast")
    for hash_, loaded in (("#/conversations?lang=en", f"tr[data-conv='{CONV}']"),
                          ("#/live", "tr[data-conv='c_review0002']")):
        down = True
        await page.evaluate("h => { location.hash = h; }", hash_)
        await expect(toast).to_have_text("Cannot reach the server; retrying…", timeout=10_000)
        await expect(page.locator("body")).not_to_contain_text("Failed to fetch")
        await page.wait_for_timeout(1_000)
        down = False
        # Back by itself, the notice gone, without a reload.
        await expect(page.locator(loaded)).to_have_count(1, timeout=10_000)
        await expect(toast).to_have_text("", timeout=10_000)
    assert page.watched.errors == []


async def test_live_keeps_its_rows_while_the_server_cannot_be_reached(
        site: Site, new_page: Any) -> None:
    # A network blip is not "not available on this server": the chats being watched stay
    # listed under the notice until the server answers again.
    page, _ = await review_page(site, new_page, "#/live")
    rows = page.get_by_role("table", name="Conversations").locator("tbody tr")
    await expect(rows).to_have_count(2, timeout=10_000)
    down = True

    async def network(route: Any) -> None:
        if down:
            await route.abort("connectionrefused")
        else:
            await route.fallback()

    await page.route(site.base + "/api/**", network)
    toast = page.locator("#toast")
    await expect(toast).to_have_text("Cannot reach the server; retrying…", timeout=10_000)
    await page.wait_for_timeout(300)
    await expect(rows).to_have_count(2)
    await expect(page.locator(f"tr[data-conv='{CONV}'] td.waiting")).to_have_text("1 min")
    await expect(page.locator("body")).not_to_contain_text("not available")
    down = False
    await expect(toast).to_have_text("", timeout=10_000)
    await expect(rows).to_have_count(2)
    assert page.watched.errors == []


@pytest.mark.parametrize(("first", "slow", "then", "heading", "tables"), [
    ("", "/api/review/conversations*", "#/live", ["Live", "Agents"], 2),
    (f"#/conversation/{CONV}", f"/api/review/conversations/{CONV}", "#/rules",
     ["Rule quality"], 1),
])
async def test_a_page_left_before_its_answer_came_does_not_show_under_the_next(
        site: Site, new_page: Any, first: str, slow: str, then: str,
        heading: list[str], tables: int) -> None:
    # Logged in at /review and straight on to Live: the list asked for on the way answers
    # late, and only the page now showing is drawn.
    page = await new_page(width=1280, height=900)
    api = ReviewApi()
    await page.route(site.base + "/api/review/**", api.handle)
    asked, answer = asyncio.Event(), asyncio.Event()

    async def late(route: Any) -> None:
        asked.set()
        await answer.wait()
        await api.handle(route)

    await page.route(site.base + slow, late)
    await login(page, site, hash_=first)
    await asyncio.wait_for(asked.wait(), 10)
    await page.evaluate("h => { location.hash = h; }", then)
    await expect(page.locator("#page").get_by_role("heading")).to_have_text(heading,
                                                                            timeout=10_000)
    await expect(page.locator("#page table tbody tr").first).to_be_visible()
    answer.set()
    await page.wait_for_timeout(500)  # the late answer has come and gone
    await expect(page.locator("#page").get_by_role("heading")).to_have_text(heading)
    await expect(page.locator("#page table")).to_have_count(tables)
    await expect(page.locator("#page .transcript")).to_have_count(0)
    assert len(api.queries(urlparse(slow.rstrip("*")).path)) == 1
    assert page.watched.errors == []
