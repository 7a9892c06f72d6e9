"""The visitor widget on the demo shop, in Chromium, against a real server and Redis."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.server.support import connect, visitor_token
from tests.widget.conftest import SHOP_SECRET, Site, ThirdPartySite
from tests.widget.support import (
    UI_TIMEOUT_MS,
    Cable,
    W,
    bubbles,
    open_shop,
    open_widget,
    wait_bubble,
    write,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(90)]

WIDGET_GZIP_LIMIT = 15 * 1024
XSS = "<img src=x onerror=alert(1)>"


def test_widget_js_is_small_gzipped_and_cacheable(site: Site) -> None:
    r = httpx.get(site.base + "/widget.js", headers={"Accept-Encoding": "gzip"}, timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert r.headers["content-encoding"] == "gzip"
    assert "max-age=" in r.headers["cache-control"] and r.headers["etag"]
    assert r.headers["vary"] == "Accept-Encoding"
    size = int(r.headers["content-length"])
    raw = len(r.content)  # httpx decodes the gzip body
    assert size == len(gzip.compress(r.content, 9, mtime=0))
    print(f"\nwidget.js: {size} bytes gzipped ({raw} bytes raw), limit {WIDGET_GZIP_LIMIT}")
    assert size <= WIDGET_GZIP_LIMIT
    again = httpx.get(site.base + "/widget.js", headers={"If-None-Match": r.headers["etag"]},
                      timeout=5)
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/", "/agent", "/review"])
def test_pages_have_a_strict_content_security_policy(site: Site, path: str) -> None:
    r = httpx.get(site.base + path, timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


async def test_visitor_writes_and_agent_receives(site: Site, new_page: Any, agent_name: Any,
                                                 out_dir: Path) -> None:
    name = await agent_name()
    agent = await site.agent_client(name)
    page = await new_page()
    await open_shop(page, site.base)
    await page.screenshot(path=out_dir / "widget-closed.png")
    await open_widget(page)
    await expect(page.locator(f"{W} form.compose")).to_be_visible()
    await page.screenshot(path=out_dir / "widget-empty.png")
    await write(page, "Hello, my order 1182 has not arrived.")
    assignment = await agent.expect("assignment", timeout=10)
    conv = assignment["conversation"]
    texts = [e["text"] for e in assignment["events"] if e["type"] == "message"]
    assert texts == ["Hello, my order 1182 has not arrived."]
    tick = page.locator(f"{W} .m.me .tick").first
    await expect(tick).to_have_text("✓", timeout=10_000)

    await agent.send(type="typing", conversation=conv, active=True)
    await page.locator(f"{W} .typing").filter(has_text="is typing").wait_for(timeout=10_000)
    reply = await agent.say("I will check that for you right now.", conversation=conv)
    await wait_bubble(page, "I will check that for you right now.", mine=False)
    assert await page.locator(f"{W} .typing").inner_text() == ""
    read = await agent.expect("read", timeout=10)  # the open widget reads what it shows
    assert read["up_to"] == reply["seq"]

    [first] = [e for e in assignment["events"] if e["type"] == "message"]
    await agent.send(type="read", conversation=conv, seq=first["seq"])
    await expect(tick).to_have_text("✓✓", timeout=10_000)
    assert await tick.get_attribute("aria-label") == "Read"
    await page.screenshot(path=out_dir / "widget-open.png")
    assert page.watched.errors == []
    await agent.close()


async def test_visitor_markup_is_shown_as_text_and_never_run(site: Site, new_page: Any,
                                                              agent_name: Any) -> None:
    agent = await site.agent_client(await agent_name())
    page = await new_page()
    await open_shop(page, site.base)
    await open_widget(page)
    await write(page, XSS)
    assignment = await agent.expect("assignment", timeout=10)
    await agent.say(XSS + " <b>bold</b>", conversation=assignment["conversation"])
    await wait_bubble(page, "<b>bold</b>", mine=False)
    assert await bubbles(page, mine=True).all_inner_texts() == [XSS]
    assert await bubbles(page, mine=False).all_inner_texts() == [XSS + " <b>bold</b>"]
    assert await page.locator(f"{W} img, {W} b").count() == 0
    await page.wait_for_timeout(300)  # an onerror handler would have fired by now
    assert page.watched.dialogs == []
    await agent.close()


@pytest.mark.parametrize(("query", "locale", "launcher", "placeholder"), [
    ("sr-Cyrl", "en-US", "Отвори ћаскање", "Напишите поруку…"),
    ("sr-Latn", "en-US", "Otvori ćaskanje", "Napišite poruku…"),
    ("hr", "en-US", "Otvori razgovor", "Napišite poruku…"),
    ("sl", "en-US", "Odpri klepet", "Napišite sporočilo …"),
    (None, "en-US", "Open chat", "Write a message…"),
])
async def test_widget_speaks_the_language_of_data_lang(site: Site, new_page: Any, query: str | None,
                                                       locale: str, launcher: str,
                                                       placeholder: str) -> None:
    page = await new_page(locale=locale)
    await open_shop(page, site.base, query)
    assert await page.locator(f"{W} .launcher").get_attribute("aria-label") == launcher
    await open_widget(page)
    assert await page.locator(f"{W} .compose textarea").get_attribute("placeholder") == placeholder


@pytest.mark.parametrize(("locale", "expected"), [
    ("sr-RS", "sr-Cyrl"), ("sr-Latn-RS", "sr-Latn"), ("hr-HR", "hr"), ("sl-SI", "sl"),
    ("de-DE", "en"),
])
async def test_widget_without_data_lang_follows_the_browser(
        site: Site, new_page: Any, third_party: ThirdPartySite, locale: str, expected: str) -> None:
    page = await new_page(locale=locale)
    await page.goto(third_party.put("/no-data-lang", (
        '<!doctype html><html><body><p>Another shop</p>'
        f'<script src="{site.base}/widget.js" data-site="shop" async></script></body></html>')))
    await page.wait_for_function("window.Tactline && window.Tactline.lang", timeout=10_000)
    assert await page.evaluate("window.Tactline.lang") == expected


async def test_serbian_cyrillic_chat_end_to_end(site: Site, new_page: Any, agent_name: Any,
                                                out_dir: Path) -> None:
    agent = await site.agent_client(await agent_name())
    page = await new_page()
    await open_shop(page, site.base, "sr-Cyrl")
    await open_widget(page)
    await write(page, "Здраво, где је моја поруџбина?")
    assignment = await agent.expect("assignment", timeout=10)
    assert assignment["visitor"]["lang"] == "sr"
    await page.locator(f"{W} .sys").filter(has_text="Сада разговарате са:").wait_for(timeout=10_000)
    await agent.say("Проверавам одмах.", conversation=assignment["conversation"])
    await wait_bubble(page, "Проверавам одмах.", mine=False)
    await agent.send(type="close", conversation=assignment["conversation"])
    await page.locator(f"{W} .csat legend").filter(
        has_text="Како бисте оценили разговор?").wait_for(timeout=10_000)
    await page.screenshot(path=out_dir / "widget-sr-cyrl.png")
    await agent.close()


@pytest.mark.parametrize(("link", "lang", "greeting"), [
    ("Hrvatski", "hr", "Dobar dan, gdje je moja narudžba?"),
    ("Srpski", "sr", "Zdravo, gde je moja porudžbina?"),
])
async def test_a_chat_started_after_switching_the_language_is_in_that_language(
        site: Site, new_page: Any, agent_name: Any, link: str, lang: str, greeting: str) -> None:
    agent = await site.agent_client(await agent_name(["en", lang]))
    page = await new_page()
    await open_shop(page, site.base)  # English first: the widget keeps an English token
    await page.wait_for_function("localStorage.getItem('tactline:demo:token')", timeout=10_000)
    await page.get_by_role("link", name=link, exact=True).click()
    await page.wait_for_url(f"**/?lang={'sr-Latn' if lang == 'sr' else lang}", timeout=10_000)
    await page.wait_for_function("window.Tactline && window.Tactline.version === 1",
                                 timeout=10_000)
    await open_widget(page)
    await write(page, greeting)
    assignment = await agent.expect("assignment", timeout=10)
    assert assignment["visitor"]["lang"] == lang
    assert page.watched.errors == []
    await agent.close()


async def test_switching_to_a_language_no_online_agent_speaks_offers_to_leave_a_message(
        site: Site, new_page: Any, agent_name: Any) -> None:
    agent = await site.agent_client(await agent_name(["en"]))
    page = await new_page()
    await open_shop(page, site.base)
    await open_widget(page)
    await expect(page.locator(f"{W} form.compose")).to_be_visible()
    await page.get_by_role("link", name="Hrvatski", exact=True).click()
    await page.wait_for_url("**/?lang=hr", timeout=10_000)
    await page.locator(f"{W} form.leave").wait_for(state="visible", timeout=10_000)  # stays open
    await expect(page.locator(f"{W} form.compose")).to_be_hidden()
    await agent.close()


@pytest.mark.parametrize(("query", "text"), [
    ("sr-Cyrl", "Ово је ТРЕЋИ ПУТ да питам!!! И даље није решено"),
    ("sr-Latn", "Ovo je TREĆI PUT da pitam!!! I dalje nije rešeno"),
])
async def test_an_upset_repeat_customer_gives_the_agent_both_scripts_in_either_script(
        site: Site, new_page: Any, agent_name: Any, query: str, text: str) -> None:
    agent = await site.agent_client(await agent_name(["sr"]))
    page = await new_page()
    await open_shop(page, site.base, query)
    await open_widget(page)
    await write(page, text)  # the message that opens the chat
    conv = (await agent.expect("assignment", timeout=10))["conversation"]
    scripts = [await agent.expect("script", conversation=conv, timeout=10) for _ in range(2)]
    assert {s["category"] for s in scripts} == {"frustration", "repeat_contact"}
    await agent.close()


async def test_history_survives_a_page_reload(site: Site, new_page: Any, agent_name: Any) -> None:
    agent = await site.agent_client(await agent_name())
    page = await new_page()
    await open_shop(page, site.base)
    await open_widget(page)
    await write(page, "first message")
    assignment = await agent.expect("assignment", timeout=10)
    await agent.say("answer before the reload", conversation=assignment["conversation"])
    await wait_bubble(page, "answer before the reload")
    await page.reload()
    await wait_bubble(page, "answer before the reload")  # the panel stays open
    assert await bubbles(page).all_inner_texts() == ["first message", "answer before the reload"]
    await write(page, "after the reload")
    got = await agent.expect("message", text="after the reload", timeout=10)
    assert got["conversation"] == assignment["conversation"]
    await agent.close()


async def test_unread_badge_counts_messages_while_closed(site: Site, new_page: Any,
                                                         agent_name: Any) -> None:
    agent = await site.agent_client(await agent_name())
    page = await new_page()
    await open_shop(page, site.base)
    await open_widget(page)
    await write(page, "hi")
    conv = (await agent.expect("assignment", timeout=10))["conversation"]
    await page.keyboard.press("Escape")
    await page.locator(f"{W} .panel").wait_for(state="hidden", timeout=5_000)
    await agent.say("one", conversation=conv)
    await agent.say("two", conversation=conv)
    badge = page.locator(f"{W} .badge")
    await expect(badge).to_have_text("2", timeout=10_000)
    assert "2 unread" in (await page.locator(f"{W} .launcher").get_attribute("aria-label"))
    await open_widget(page)
    await badge.wait_for(state="hidden", timeout=5_000)
    await agent.close()


async def test_queue_position_is_shown_while_waiting(site: Site, new_page: Any,
                                                     agent_name: Any) -> None:
    agent = await site.agent_client(await agent_name(), online=False)
    await agent.send(type="status", status="online", capacity=1)
    first, second = await new_page(), await new_page()
    for page in (first, second):
        await open_shop(page, site.base)
        await open_widget(page)
    await write(first, "first visitor")
    await agent.expect("assignment", timeout=10)
    await write(second, "second visitor")
    await second.locator(f"{W} .notice").filter(has_text="number 1 in line").wait_for(
        timeout=10_000)
    await agent.close()


async def leave_a_message(
    page: Any, name: str, email: str, text: str, send: str, *, after_what_is_there: bool = False
) -> None:
    """Fill in the leave-a-message form (its labels in the page's language) and send it;
    ``after_what_is_there``: the text goes after what the form holds already."""
    form = page.locator(f"{W} form.leave")
    await form.wait_for(state="visible", timeout=10_000)
    await expect(page.locator(f"{W} form.compose")).to_be_hidden()
    inputs = form.locator("input, textarea")
    await inputs.nth(0).fill(name)
    await inputs.nth(1).fill(email)
    there = await inputs.nth(2).input_value() if after_what_is_there else ""
    await inputs.nth(2).fill(f"{there} {text}".strip())
    await form.get_by_role("button", name=send).click()


async def left_waiting(agent: Any, lang: str) -> dict[str, Any]:
    """The queue entry of a message left in ``lang``, from the agent's next snapshots."""
    while True:
        snapshot = await agent.expect("queue_snapshot", timeout=10)
        for entry in snapshot["queue"]:
            if entry["left_message"] and entry["lang"] == lang:
                return dict(entry)


async def test_leave_a_message_when_no_agent_is_online(site: Site, new_page: Any,
                                                       agent_name: Any) -> None:
    name = await agent_name()
    page = await new_page()
    await open_shop(page, site.base)
    await open_widget(page)
    form = page.locator(f"{W} form.leave")
    await form.wait_for(state="visible", timeout=10_000)
    await form.get_by_label("Name").fill("Ana")
    await form.get_by_label("Email").fill("ana@example.com")
    await form.get_by_label("Message").fill("Please call me back about order 1182.")
    await form.get_by_role("button", name="Send message").click()
    await page.locator(f"{W} .sys").filter(has_text="get back to you").wait_for(timeout=10_000)
    # Thanked below the message it refers to, and not put in a line to wait.
    log = page.locator(f"{W} .log li")
    texts = [t.strip() for t in await log.all_inner_texts()]
    mine = next(i for i, t in enumerate(texts) if "order 1182" in t)
    thanks = next(i for i, t in enumerate(texts) if "get back to you" in t)
    assert mine < thanks, texts
    await asyncio.sleep(1.0)  # queue updates come within the debounce
    assert "in line" not in (await page.locator(f"{W} .notice").inner_text()), texts
    # Nothing to end meanwhile: the message waits for an agent, after a reload too.
    end = page.locator(f"{W} header button.end")
    await expect(end).to_be_hidden()
    await page.reload()  # the panel stays open
    await wait_bubble(page, "Please call me back about order 1182.", mine=True)
    await expect(end).to_be_hidden()
    # The next agent finds it in the queue and takes it; it was no live chat meanwhile.
    agent = await site.agent_client(name, online=False)
    await agent.send(type="status", status="online")
    entry = await left_waiting(agent, "en")
    assert await agent.quiet("assignment", within=1.0) == []
    await agent.send(type="accept", conversation=entry["conversation"])
    assignment = await agent.expect("assignment", timeout=10)
    [msg] = [e for e in assignment["events"] if e["type"] == "message"]
    assert msg["contact"] == {"name": "Ana", "email": "ana@example.com"}
    name_shown = assignment["events"][-1]["agent"]["name"]
    await page.locator(f"{W} .sys").filter(
        has_text=f"{name_shown} has picked up your message.").wait_for(timeout=10_000)
    texts = [t.strip() for t in await log.all_inner_texts()]
    assert not any("now chatting" in t for t in texts), texts
    await expect(end).to_be_visible()  # an agent has it: a chat the visitor may end
    assert page.watched.errors == []
    await agent.close()


async def test_a_visitor_whose_language_no_online_agent_speaks_may_leave_a_message(
        site: Site, new_page: Any, agent_name: Any) -> None:
    agent = await site.agent_client(await agent_name(["en", "sr"]))
    english = await new_page()
    await open_shop(english, site.base)
    await open_widget(english)
    await expect(english.locator(f"{W} form.compose")).to_be_visible()
    page = await new_page()
    await open_shop(page, site.base, "sl")
    await open_widget(page)
    # Offered in Slovenian, as when nobody is online: no place in a line that never moves.
    await expect(page.locator(f"{W} form.leave .intro")).to_have_text(
        "Trenutno ni nikogar na voljo. Pustite sporočilo in oglasili se vam bomo.")
    await leave_a_message(page, "Ana", "ana@example.si", "Pokličite me glede naročila 1182.",
                          "Pošlji sporočilo")
    await page.locator(f"{W} .sys").filter(
        has_text="Oglasili se vam bomo po e-pošti.").wait_for(timeout=10_000)
    await asyncio.sleep(1.0)  # queue updates come within the debounce
    assert await page.locator(f"{W} .notice").inner_text() == ""
    await left_waiting(agent, "sl")
    assert await agent.quiet("assignment") == []
    assert page.watched.errors == []
    await agent.close()


async def test_a_message_left_after_an_agent_for_the_language_came_online_starts_a_chat(
        site: Site, new_page: Any, agent_name: Any) -> None:
    page = await new_page()
    await open_shop(page, site.base, "sl")
    await open_widget(page)
    form = page.locator(f"{W} form.leave")
    await form.wait_for(state="visible", timeout=10_000)
    await form.get_by_label("Ime").fill("Ana")  # begun: the form stays when the agent comes
    agent = await site.agent_client(await agent_name(["en", "sl"]))
    await leave_a_message(page, "Ana", "ana@example.si", "Ali me slišite?", "Pošlji sporočilo")
    assignment = await agent.expect("assignment", timeout=10)
    texts = [e["text"] for e in assignment["events"] if e["type"] == "message"]
    assert texts == ["Ali me slišite?"]
    await wait_bubble(page, "Ali me slišite?", mine=True)
    await page.locator(f"{W} .sys").filter(has_text="Zdaj se pogovarjate z").wait_for(
        timeout=10_000)
    await expect(page.locator(f"{W} form.compose")).to_be_visible()
    assert page.watched.errors == []
    await agent.close()


async def test_the_leave_a_message_form_turns_into_the_chat_when_an_agent_comes_online(
        site: Site, new_page: Any, agent_name: Any) -> None:
    page = await new_page()
    await open_shop(page, site.base, "sl")
    await open_widget(page)
    await page.locator(f"{W} form.leave").wait_for(state="visible", timeout=10_000)
    agent = await site.agent_client(await agent_name(["en", "sl"]))
    # Nothing was written in the form yet: the chat box takes its place.
    await expect(page.locator(f"{W} form.compose")).to_be_visible(timeout=10_000)
    await expect(page.locator(f"{W} form.leave")).to_be_hidden()
    await write(page, "Pozdravljeni")
    assignment = await agent.expect("assignment", timeout=10)
    assert assignment["visitor"]["lang"] == "sl"
    assert page.watched.errors == []
    await agent.close()


async def test_a_half_written_left_message_is_offered_the_chat_instead(
        site: Site, new_page: Any, agent_name: Any) -> None:
    page = await new_page()
    await open_shop(page, site.base, "sl")
    await open_widget(page)
    form = page.locator(f"{W} form.leave")
    await form.wait_for(state="visible", timeout=10_000)
    await form.get_by_label("Sporočilo").fill("Pokličite me glede naročila 1182.")
    agent = await site.agent_client(await agent_name(["en", "sl"]))
    chat_now = form.get_by_role("button", name="Zdaj je nekdo na voljo — začnite klepet")
    await chat_now.wait_for(timeout=10_000)
    await expect(form).to_be_visible()  # what the visitor wrote stays where they wrote it
    await chat_now.click()
    box = page.locator(f"{W} .compose textarea")
    await expect(box).to_have_value("Pokličite me glede naročila 1182.")
    await expect(box).to_be_focused()
    await box.press("Enter")
    assignment = await agent.expect("assignment", timeout=10)
    texts = [e["text"] for e in assignment["events"] if e["type"] == "message"]
    assert texts == ["Pokličite me glede naročila 1182."]
    assert page.watched.errors == []
    await agent.close()


async def test_the_chat_offer_goes_when_the_agent_goes_before_the_visitor_wrote(
        site: Site, new_page: Any, agent_name: Any) -> None:
    agent = await site.agent_client(await agent_name(["en", "sl"]))
    page = await new_page()
    await open_shop(page, site.base, "sl")
    await open_widget(page)
    await expect(page.locator(f"{W} form.compose")).to_be_visible()
    await agent.send(type="status", status="away")
    await page.locator(f"{W} form.leave").wait_for(state="visible", timeout=10_000)
    await expect(page.locator(f"{W} form.compose")).to_be_hidden()
    assert page.watched.errors == []
    await agent.close()


async def test_a_waiting_visitor_is_offered_to_leave_a_message_when_their_agents_go(
        site: Site, new_page: Any, agent_name: Any) -> None:
    english = await site.agent_client(await agent_name(["en"]))
    slovenian = await site.agent_client(await agent_name(["en", "sl"]))
    page = await new_page()
    await open_shop(page, site.base, "sl")
    await open_widget(page)
    await expect(page.locator(f"{W} form.compose")).to_be_visible()
    await slovenian.send(type="status", status="away")
    # The visitor writes as the news that nobody is there comes: what they wrote is sent
    # as a chat message, or, if the form came first, is carried into it. Never lost.
    await write(page, "Pozdravljeni")
    await leave_a_message(page, "Ana", "ana@example.si", "Pokličite me, prosim.",
                          "Pošlji sporočilo", after_what_is_there=True)
    await page.locator(f"{W} .sys").filter(
        has_text="Oglasili se vam bomo po e-pošti.").wait_for(timeout=10_000)
    # Back online, the Slovenian speaker is not handed it as a chat, but accepts it.
    await slovenian.send(type="status", status="online")
    entry = await left_waiting(slovenian, "sl")
    assert await slovenian.quiet("assignment", within=1.0) == []
    await slovenian.send(type="accept", conversation=entry["conversation"])
    assignment = await slovenian.expect("assignment", timeout=10)
    texts = [e["text"] for e in assignment["events"] if e["type"] == "message"]
    assert " ".join(texts) == "Pozdravljeni Pokličite me, prosim.", texts
    await page.locator(f"{W} .sys").filter(
        has_text="Z vašim sporočilom se ukvarja:").wait_for(timeout=10_000)
    assert page.watched.errors == []
    for agent in (english, slovenian):
        await agent.close()


async def test_a_visitor_whose_agent_left_is_told_and_keeps_writing_for_the_next(
        site: Site, new_page: Any, agent_name: Any) -> None:
    # The site's grace period is 2 s: then the agent's chats go back to the queue.
    slovenian = await site.agent_client(await agent_name(["en", "sl"]))
    page = await new_page()
    await open_shop(page, site.base, "sl")
    await open_widget(page)
    await write(page, "Pozdravljeni, paket ni prišel.")
    assignment = await slovenian.expect("assignment", timeout=10)
    conv, shown = assignment["conversation"], assignment["events"][-1]["agent"]["name"]
    await slovenian.say("Takoj preverim.", conversation=conv)
    await wait_bubble(page, "Takoj preverim.", mine=False)
    await slovenian.close()  # gone for good: nobody else online speaks Slovenian
    await page.locator(f"{W} .sys").filter(
        has_text=f"{shown} ni več v pogovoru.").wait_for(timeout=15_000)
    # One state: the chat stays open to write in, no leave-a-message form over it.
    await asyncio.sleep(1.0)  # queue updates come within the debounce
    await expect(page.locator(f"{W} form.compose")).to_be_visible()
    await expect(page.locator(f"{W} form.leave")).to_be_hidden()
    await write(page, "Ste še tam?")
    # The next agent who speaks Slovenian gets the chat with all of it.
    successor = await site.agent_client(await agent_name(["sl"]))
    handed = await successor.expect("assignment", conversation=conv, timeout=10)
    texts = [e["text"] for e in handed["events"] if e["type"] == "message"]
    assert texts[-1] == "Ste še tam?" and "Takoj preverim." in texts, texts
    [now_with] = [e["agent"]["name"] for e in handed["events"][-1:] if e["type"] == "assigned"]
    await page.locator(f"{W} .sys").filter(
        has_text=f"Zdaj se pogovarjate z: {now_with}").wait_for(timeout=10_000)
    assert page.watched.errors == []
    await successor.close()


async def test_an_empty_chat_greets_the_visitor_unless_nobody_can_answer(
        site: Site, new_page: Any, agent_name: Any) -> None:
    agent = await site.agent_client(await agent_name(["en", "hr"]))
    page = await new_page()
    await open_shop(page, site.base, "hr")
    await open_widget(page)
    log = page.locator(f"{W} .log")

    async def greeting() -> str:
        return str(await log.evaluate("el => getComputedStyle(el, '::before').content"))

    await expect(page.locator(f"{W} form.compose")).to_be_visible()
    assert "Pišite nam ovdje" in await greeting()
    await write(page, "Pozdrav")
    await expect(page.locator(f"{W} .log li")).not_to_have_count(0)
    assert "Pišite nam" not in await greeting()
    # With nobody online who speaks the language, the form speaks instead.
    slovenian = await new_page()
    await open_shop(slovenian, site.base, "sl")
    await open_widget(slovenian)
    await expect(slovenian.locator(f"{W} form.leave")).to_be_visible(timeout=10_000)
    said = await slovenian.locator(f"{W} .log").evaluate(
        "el => getComputedStyle(el, '::before').content")
    assert "Pišite nam" not in said
    assert page.watched.errors == [] and slovenian.watched.errors == []
    await agent.close()


async def test_a_paste_over_the_limit_is_cut_with_a_notice(site: Site, new_page: Any,
                                                           agent_name: Any) -> None:
    agent = await site.agent_client(await agent_name(["en", "sl"]))
    page = await new_page()
    await open_shop(page, site.base, lang="sl")
    await open_widget(page)
    box = page.locator(f"{W} .compose textarea")
    await box.fill("a" * 4500)
    assert len(await box.input_value()) == 4000
    await expect(page.locator(f"{W} .notice")).to_have_text(
        "Sporočilo ima lahko največ 4.000 znakov: besedilo čez to se ne doda.")
    await box.fill("short")
    await expect(page.locator(f"{W} .notice")).to_have_text("")
    await agent.close()


async def test_rating_is_offered_when_the_chat_closes(site: Site, new_page: Any,
                                                      agent_name: Any) -> None:
    agent = await site.agent_client(await agent_name())
    page = await new_page()
    await open_shop(page, site.base)
    await open_widget(page)
    await write(page, "thanks, that is all")
    conv = (await agent.expect("assignment", timeout=10))["conversation"]
    for i in range(12):  # enough to fill the panel
        await agent.say(f"Here is step {i} of what we did for you today.", conversation=conv)
    await wait_bubble(page, "Here is step 11 of what we did for you today.", mine=False)
    await agent.send(type="close", conversation=conv)
    csat = page.locator(f"{W} form.csat")
    await csat.wait_for(state="visible", timeout=10_000)
    # The form takes room; the end of the chat stays in view above it.
    end = page.locator(f"{W} .log li").last
    await expect(end).to_contain_text("ended")
    await expect(end).to_be_in_viewport()
    await csat.get_by_label("4 of 5").check()
    await csat.get_by_label("Comment (optional)").fill("Quick and kind")
    await csat.get_by_role("button", name="Send rating").click()
    await page.locator(f"{W} .sys").filter(has_text="Thank you for your feedback").wait_for(
        timeout=5_000)
    await expect(csat).to_be_hidden()
    again = page.locator(W).get_by_role("button", name="Start a new chat")
    await expect(again).to_be_focused()
    await again.click()
    await page.locator(f"{W} .compose textarea").wait_for(state="visible", timeout=5_000)
    await agent.close()


async def chat_with_an_agent(site: Site, new_page: Any, agent_name: Any, text: str,
                             lang: str | None = None, width: int = 1280,
                             height: int = 800) -> tuple[Any, Any, str]:
    """A visitor who wrote ``text`` and the agent who took the chat: (agent, page, conv)."""
    agent = await site.agent_client(await agent_name())
    page = await new_page(width=width, height=height)
    await open_shop(page, site.base, lang)
    await open_widget(page)
    await write(page, text)
    conv = (await agent.expect("assignment", timeout=10))["conversation"]
    await page.locator(f"{W} .sys").first.wait_for(timeout=UI_TIMEOUT_MS)  # "now chatting with"
    return agent, page, str(conv)


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1280, 800)])
async def test_the_rating_may_be_skipped_and_a_new_chat_started(
        site: Site, new_page: Any, agent_name: Any, out_dir: Path, width: int, height: int) -> None:
    agent, page, conv = await chat_with_an_agent(site, new_page, agent_name, "where is my parcel?",
                                                 width=width, height=height)
    await agent.send(type="close", conversation=conv)
    csat = page.locator(f"{W} form.csat")
    again = page.locator(W).get_by_role("button", name="Start a new chat")
    await expect(csat).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(again).to_be_visible()  # without rating first
    await expect(page.locator(f"{W} form.compose")).to_be_hidden()  # the closed chat is read-only
    for button in (csat.get_by_role("button", name="Skip"), again):
        box = await button.bounding_box()
        assert box is not None and box["x"] + box["width"] <= width and box["height"] >= 36
    await page.screenshot(path=out_dir / f"widget-ended-{width}.png")
    await csat.get_by_role("button", name="Skip").click()
    await expect(csat).to_be_hidden()
    await expect(again).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(bubbles(page)).to_have_count(0)  # a new chat starts empty
    await expect(again).to_be_hidden()
    await expect(page.locator(f"{W} .compose textarea")).to_be_focused()
    await write(page, "one more question")
    second = await agent.expect("assignment", timeout=10)
    assert second["conversation"] != conv
    assert [e["text"] for e in second["events"] if e["type"] == "message"] == ["one more question"]
    assert page.watched.errors == []
    await agent.close()


async def test_a_closed_chat_stays_readable_after_a_reload(site: Site, new_page: Any,
                                                           agent_name: Any, out_dir: Path) -> None:
    agent, page, conv = await chat_with_an_agent(site, new_page, agent_name, "where is my parcel?",
                                                 width=390, height=844)
    said = "It is on its way: https://posta.example/track/RR123456789RS."
    await agent.say(said, conversation=conv)
    await wait_bubble(page, "RR123456789RS", mine=False)
    await agent.send(type="close", conversation=conv)
    csat = page.locator(f"{W} form.csat")
    again = page.locator(W).get_by_role("button", name="Start a new chat")
    compose = page.locator(f"{W} form.compose")
    await expect(csat).to_be_visible(timeout=UI_TIMEOUT_MS)

    # Reloaded before rating: the whole chat, read-only, still offering the rating.
    await page.reload()
    await wait_bubble(page, "RR123456789RS", mine=False)
    assert await bubbles(page).all_inner_texts() == ["where is my parcel?", said]
    await expect(page.locator(f"{W} .sys").filter(has_text="The chat has ended.")).to_have_count(1)
    await expect(csat).to_be_visible()
    await expect(again).to_be_visible()
    await expect(compose).to_be_hidden()
    await expect(page.locator(f"{W} header button.end")).to_be_hidden()
    await page.screenshot(path=out_dir / "widget-ended-reloaded-390.png")
    await csat.get_by_label("3 of 5").check()
    await csat.get_by_role("button", name="Send rating").click()
    token = await site.login("supervisor")
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(20):
            r = await http.get(f"{site.base}/api/review/conversations/{conv}",
                               headers={"Authorization": f"Bearer {token}"})
            if r.status_code == 200 and r.json().get("csat") == 3:
                break
            await page.wait_for_timeout(200)
        assert r.status_code == 200 and r.json()["csat"] == 3

    # Rated: after the next reload the chat is still there, without the form.
    await page.reload()
    await wait_bubble(page, "RR123456789RS", mine=False)
    await expect(again).to_be_visible()
    await expect(csat).to_be_hidden()
    await expect(compose).to_be_hidden()

    # A new chat replaces it, also after a reload.
    await again.click()
    await expect(bubbles(page)).to_have_count(0)
    await page.reload()
    await expect(page.locator(f"{W} .compose textarea")).to_be_visible(timeout=UI_TIMEOUT_MS)
    await page.wait_for_timeout(500)  # the old chat would be shown by now
    assert await bubbles(page).count() == 0
    await expect(again).to_be_hidden()
    assert page.watched.errors == []
    await agent.close()


async def test_ending_the_chat_asks_first_and_keeps_away_from_close(
        site: Site, new_page: Any, agent_name: Any, out_dir: Path) -> None:
    agent, page, conv = await chat_with_an_agent(site, new_page, agent_name, "that is all",
                                                 width=390, height=844)
    end, x = page.locator(f"{W} header button.end"), page.locator(f"{W} header button.x")
    await expect(end).to_be_visible()
    end_box, x_box = await end.bounding_box(), await x.bounding_box()
    assert end_box is not None and x_box is not None
    assert x_box["x"] - (end_box["x"] + end_box["width"]) >= 16, (end_box, x_box)
    assert x_box["width"] >= 40 and x_box["height"] >= 40
    confirm = page.locator(W).get_by_role("group", name="End this chat?")
    # No, and Escape, leave the chat open (and the panel with it).
    await end.click()
    await expect(confirm).to_be_visible()
    await expect(confirm.get_by_role("button", name="No")).to_be_focused()
    await page.screenshot(path=out_dir / "widget-end-confirm-390.png")
    await confirm.get_by_role("button", name="No").click()
    await expect(confirm).to_be_hidden()
    await expect(end).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(confirm).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(confirm).to_be_hidden()
    await expect(page.locator(f"{W} .panel")).to_be_visible()
    assert await agent.quiet("closed", within=0.5) == []
    # Yes ends it; the agent answered, so the rating is offered.
    await end.click()
    await confirm.get_by_role("button", name="Yes").click()
    await agent.expect("closed", conversation=conv, timeout=10)
    await expect(page.locator(f"{W} form.csat")).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(page.locator(f"{W} form.csat")).to_be_focused()
    await page.keyboard.press("Tab")  # to the stars, none of them chosen
    await expect(page.locator(f"{W} form.csat input").first).to_be_focused()
    assert await page.locator(f"{W} form.csat input:checked").count() == 0
    await expect(end).to_be_hidden()
    await agent.close()


@pytest.mark.parametrize(("lang", "question", "yes", "no", "skip", "again"), [
    ("en", "End this chat?", "Yes", "No", "Skip", "Start a new chat"),
    ("sr-Latn", "Da li želite da završite razgovor?", "Da", "Ne", "Preskoči",
     "Započni novi razgovor"),
    ("sr-Cyrl", "Да ли желите да завршите разговор?", "Да", "Не", "Прескочи",
     "Започни нови разговор"),
    ("hr", "Želite li završiti razgovor?", "Da", "Ne", "Preskoči", "Započni novi razgovor"),
    ("sl", "Želite končati pogovor?", "Da", "Ne", "Preskoči", "Začni nov pogovor"),
], ids=["en", "sr-Latn", "sr-Cyrl", "hr", "sl"])
async def test_ending_and_rating_speak_the_visitor_language(
        site: Site, new_page: Any, agent_name: Any, out_dir: Path, lang: str, question: str,
        yes: str, no: str, skip: str, again: str) -> None:
    agent, page, conv = await chat_with_an_agent(site, new_page, agent_name, "hvala", lang=lang,
                                                 width=390, height=844)
    await page.locator(f"{W} header button.end").click()
    confirm = page.locator(W).get_by_role("group", name=question)
    await expect(confirm).to_have_text(question + yes + no)
    await page.screenshot(path=out_dir / f"widget-end-confirm-{lang}-390.png")
    await confirm.get_by_role("button", name=yes, exact=True).click()
    await page.locator(f"{W} form.csat").get_by_role("button", name=skip).click()
    await page.locator(W).get_by_role("button", name=again).click()
    await expect(page.locator(f"{W} .compose textarea")).to_be_focused()
    await agent.close()


async def test_a_chat_nobody_answered_ends_without_a_rating(site: Site, new_page: Any,
                                                           agent_name: Any) -> None:
    agent = await site.agent_client(await agent_name(), online=False)
    await agent.send(type="status", status="online", capacity=1)
    busy = await connect(site.ws, "/ws/visitor", await visitor_token(site.base, site="demo"))
    await busy.send(type="message", id="m-first", text="I took the only place")
    await agent.expect("assignment", timeout=10)
    page = await new_page()
    await open_shop(page, site.base)
    await open_widget(page)
    await write(page, "anyone there?")
    await page.locator(f"{W} .notice").filter(has_text="number 1 in line").wait_for(
        timeout=UI_TIMEOUT_MS)
    await page.locator(f"{W} header button.end").click()
    await page.locator(W).get_by_role("button", name="Yes").click()
    await page.locator(f"{W} .sys").filter(has_text="The chat has ended.").wait_for(
        timeout=UI_TIMEOUT_MS)
    again = page.locator(W).get_by_role("button", name="Start a new chat")
    await expect(again).to_be_focused()
    await expect(page.locator(f"{W} form.csat")).to_be_hidden()
    await expect(page.locator(f"{W} .notice")).to_have_text("")
    await page.reload()  # not offered after a reload either
    await wait_bubble(page, "anyone there?")
    await expect(again).to_be_visible()
    await expect(page.locator(f"{W} form.csat")).to_be_hidden()
    await busy.close()
    await agent.close()


async def test_links_the_agent_sends_open_in_a_new_tab(site: Site, new_page: Any,
                                                      agent_name: Any, out_dir: Path) -> None:
    agent, page, conv = await chat_with_an_agent(site, new_page, agent_name, "tracking?")
    said = ("Track it at https://posta.example/track/123. Or see the FAQ "
            "(https://posta.example/faq). javascript:alert(1) http://x.example/a\"><img src=x "
            "onerror=alert(1)>")
    await agent.say(said, conversation=conv)
    await wait_bubble(page, "Track it at", mine=False)
    text = bubbles(page, mine=False).last
    assert await text.inner_text() == said  # the words as sent, links or not
    links = text.locator("a")
    hrefs = ["https://posta.example/track/123", "https://posta.example/faq", "http://x.example/a"]
    await expect(links).to_have_count(3)
    assert await links.all_inner_texts() == hrefs
    for i, href in enumerate(hrefs):
        assert await links.nth(i).get_attribute("href") == href
        assert await links.nth(i).get_attribute("target") == "_blank"
        assert await links.nth(i).get_attribute("rel") == "noopener noreferrer"
    assert await page.locator(f"{W} img").count() == 0
    await page.screenshot(path=out_dir / "widget-links.png")
    await page.context.route("https://posta.example/**", lambda route: route.fulfill(
        body="<p>Parcel 123: on its way</p>", content_type="text/html"))
    async with page.context.expect_page() as opened:
        await links.first.click()
    tab = await opened.value
    await tab.wait_for_load_state()
    assert tab.url == hrefs[0]
    assert await tab.evaluate("window.opener") is None
    assert page.watched.dialogs == [] and page.watched.errors == []
    await agent.close()


async def test_the_widget_reconnects_at_once_when_the_browser_is_back_online(
        site: Site, new_page: Any) -> None:
    page = await new_page()
    cable = Cable()
    await cable.attach(page, "**/ws/visitor")
    await open_shop(page, site.base)
    await open_widget(page)
    notice = page.locator(f"{W} .notice")
    # Welcomed: the message box, or the form if no agent is online.
    await page.locator(f"{W} form.compose:not([hidden]), {W} form.leave:not([hidden])").wait_for(
        timeout=UI_TIMEOUT_MS)
    await page.context.set_offline(True)
    await cable.cut()  # the connection drops with the network
    await expect(notice).to_have_text("Reconnecting…")
    await page.wait_for_timeout(12_000)  # attempts fail meanwhile; the backoff grows
    await page.context.set_offline(False)
    await expect(notice).to_have_text("", timeout=1_500)  # not after the backoff

    # The same when the page comes back into view (a hidden tab's timers are slowed down).
    await page.evaluate(
        "() => Object.defineProperty(document, 'hidden', {value: true, configurable: true})")
    cable.down = True
    await cable.cut()
    await expect(notice).to_have_text("Reconnecting…")
    await page.wait_for_timeout(12_000)
    cable.down = False
    await page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {value: false, configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    await expect(notice).to_have_text("", timeout=1_500)
    assert page.watched.errors == []


async def test_keyboard_only_use(site: Site, new_page: Any) -> None:
    page = await new_page()
    await open_shop(page, site.base)
    await page.locator(f"{W} .launcher").focus()
    await page.keyboard.press("Enter")
    await page.locator(f"{W} .panel").wait_for(state="visible", timeout=5_000)
    focused = await page.evaluate(
        "document.querySelector('#tactline-widget').shadowRoot.activeElement.tagName")
    assert focused in ("TEXTAREA", "INPUT")
    assert await page.locator(f"{W} .launcher").get_attribute("aria-expanded") == "true"
    await page.keyboard.press("Escape")
    await page.locator(f"{W} .panel").wait_for(state="hidden", timeout=5_000)
    assert await page.locator(f"{W} .log").get_attribute("role") == "log"


async def test_phone_width_and_page_styles_do_not_leak_in(site: Site, new_page: Any,
                                                          out_dir: Path) -> None:
    page = await new_page(width=360, height=740)
    await open_shop(page, site.base)
    await page.screenshot(path=out_dir / "widget-phone-closed.png")
    await open_widget(page)
    box = await page.locator(f"{W} .panel").bounding_box()
    assert box is not None and box["width"] == 360 and box["x"] == 0
    send = page.locator(f"{W} form:not([hidden]) button[type=submit]")
    send_box = await send.bounding_box()
    assert send_box is not None and send_box["x"] + send_box["width"] <= 360
    # demo.css makes page textareas red in Comic Sans; the widget's must not be.
    color = await page.locator(f"{W} .compose textarea").evaluate(
        "el => getComputedStyle(el).color")
    assert color != "rgb(255, 0, 0)"
    await page.screenshot(path=out_dir / "widget-phone-open.png")


async def test_rating_reaches_the_review_also_when_given_offline(
        site: Site, new_page: Any, agent_name: Any) -> None:
    agent = await site.agent_client(await agent_name())
    page = await new_page()
    cable = Cable()
    await cable.attach(page, "**/ws/visitor")
    await open_shop(page, site.base)
    await open_widget(page)
    await write(page, "rate me")
    conv = (await agent.expect("assignment", timeout=10))["conversation"]
    await agent.send(type="close", conversation=conv)
    csat = page.locator(f"{W} form.csat")
    await csat.wait_for(state="visible", timeout=10_000)
    # The connection is down while the visitor rates: the rating waits for it.
    cable.down = True
    await cable.cut()
    await expect(page.locator(f"{W} .notice")).to_have_text("Reconnecting…")
    await csat.get_by_label("5 of 5").check()
    await csat.get_by_role("button", name="Send rating").click()
    await page.wait_for_timeout(1_000)
    cable.down = False
    token = await site.login("supervisor")
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(20):
            r = await http.get(f"{site.base}/api/review/conversations/{conv}",
                               headers={"Authorization": f"Bearer {token}"})
            if r.status_code == 200 and r.json().get("csat") == 5:
                break
            await page.wait_for_timeout(200)
        assert r.status_code == 200 and r.json()["csat"] == 5
    await agent.close()


async def test_verified_visitor_continues_on_another_device(
        site: Site, new_page: Any, agent_name: Any, third_party: ThirdPartySite) -> None:
    """The widget on another origin, with identity verification."""
    agent = await site.agent_client(await agent_name())
    user_hash = hmac.new(SHOP_SECRET.encode(), b"42", hashlib.sha256).hexdigest()

    async def shop_page(hash_: str) -> Any:
        page = await new_page()
        url = third_party.put(f"/account-{hash_[:8]}", (
            '<!doctype html><html><body><p>Logged in as Ana</p>'
            f'<script src="{site.base}/widget.js" data-site="shop" async></script><script>'
            'addEventListener("load", function () { Tactline.identify({userId: "42", '
            f'userHash: "{hash_}", name: "Ana", email: "ana@example.com"}}); }});'
            '</script></body></html>'))
        await page.goto(url)
        await page.locator(f"{W} .launcher").wait_for(timeout=10_000)
        await open_widget(page)
        return page

    laptop = await shop_page(user_hash)
    await write(laptop, "written on the laptop")
    assignment = await agent.expect("assignment", timeout=10)
    assert assignment["visitor"]["name"] == "Ana"
    assert assignment["visitor"]["email"] == "ana@example.com"
    phone = await shop_page(user_hash)  # a new browser context: no shared storage
    await wait_bubble(phone, "written on the laptop", mine=True)

    impostor = await shop_page("0" * 64)  # a wrong hash: an anonymous visitor, no history
    await impostor.locator(f"{W} .compose textarea").wait_for(timeout=10_000)
    await impostor.wait_for_timeout(500)
    assert await bubbles(impostor).count() == 0
    await agent.close()
