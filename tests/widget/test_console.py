"""The agent console (/agent) in Chromium.

Two kinds of tests: against the real server (chat, transfer, close, markup as text), and
against a scripted /ws/agent that sends the coaching frames of docs/coaching.md exactly
as documented, so the composer's behaviour is pinned down independently of the coach.
The same coaching scenarios against the real server are at the end; they are expected
to fail until the server answers ``draft`` frames.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.server.support import PASSWORD, connect, visitor_token
from tests.widget.conftest import Site
from tests.widget.support import Cable, W, open_shop, open_widget, wait_bubble, write

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(90)]

XSS = "<img src=x onerror=alert(1)>"
SHOTS = Path("/tmp/console2-shots")  # screenshots to look at, outside the repository
NOT_MY_JOB = "I don't know, that's not my job."
FLAGS = [
    {"rule": "en.dont_know.i_dont_know", "category": "dont_know", "severity": "warning",
     "start": 0, "end": 12, "text": "I don't know", "message": "Say what you will do instead.",
     "suggestions": ["Let me find out for you"]},
    {"rule": "en.not_my_job.not_my_job", "category": "not_my_job", "severity": "warning",
     "start": 14, "end": 31, "text": "that's not my job", "message": "Own the request.",
     "suggestions": ["I'll make sure the right team handles this"]},
]


async def login(page: Any, site: Site, name: str, online: bool = True) -> None:
    await page.goto(site.base + "/agent")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password").fill(site.accounts.get(name, PASSWORD))
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#conn")).to_have_text("Connected", timeout=10_000)
    if online:
        await page.locator("#status").select_option("online")
        await asyncio.sleep(0.3)  # the status frame reaches the server before visitors come


# ------------------------------------------------------------------ real server


async def chat_in_console(site: Site, new_page: Any, name: str,
                          first: str) -> tuple[Any, Any]:
    """Agent ``name`` in the console with the chat of a visitor who wrote ``first``."""
    console = await new_page()
    await login(console, site, name)
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    await write(shop, first)
    await console.locator("#chats .item").first.wait_for(timeout=10_000)
    return console, shop


async def close_chat(console: Any) -> None:
    """Close the chat on show, confirming in the dialog that asks first."""
    await console.get_by_role("button", name="Close chat").click()
    await console.locator("#close-confirm").get_by_role("button", name="Close",
                                                        exact=True).click()


def frames_sent(page: Any) -> list[dict[str, Any]]:
    """The frames ``page`` sends on the sockets it opens from now on (after a reload)."""
    sent: list[dict[str, Any]] = []
    page.on("websocket", lambda ws: ws.on(
        "framesent", lambda data: sent.append(json.loads(data))))
    return sent


async def kept_drafts(console: Any, name: str) -> dict[str, str]:
    """The unsent replies the console keeps for agent ``name`` over a reload."""
    kept = await console.evaluate(
        "name => sessionStorage.getItem('tactline:drafts:' + name)", name)
    return json.loads(kept) if kept else {}


async def test_agent_answers_a_visitor_from_the_console(site: Site, new_page: Any,
                                                        agent_name: Any) -> None:
    name = await agent_name()
    console = await new_page()
    await login(console, site, name)
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    await write(shop, "Hello, is anyone there?")
    chat = console.locator("#chats .item").first
    await chat.wait_for(timeout=10_000)
    await expect(console.locator("#transcript .msg .text")).to_have_text(
        ["Hello, is anyone there?"], timeout=10_000)
    await expect(console.locator("#chats .wait")).to_have_text(re.compile(r"^\d+ s$"))
    await console.locator("#draft").fill("Yes, I am here. How can I help?")
    await console.locator("#draft").press("Enter")
    await wait_bubble(shop, "Yes, I am here. How can I help?", mine=False)
    await expect(console.locator("#transcript .msg.mine .state")).to_have_text("read",
                                                                               timeout=10_000)
    await console.locator("#draft").fill("Line one")
    await console.locator("#draft").press("Shift+Enter")
    await console.locator("#draft").type("line two")
    assert await console.locator("#draft").input_value() == "Line one\nline two"
    assert console.watched.errors == []


async def test_read_receipts_go_once_per_new_message(site: Site, new_page: Any,
                                                     agent_name: Any) -> None:
    # A receipt is an event too: answering it with another receipt went on for ever,
    # until the rate limit closed the console.
    name = await agent_name()
    console = await new_page()
    sent: list[str] = []
    console.on("websocket", lambda ws: ws.on("framesent", lambda data: sent.append(str(data))))
    await login(console, site, name)
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    for i in range(3):
        await write(shop, f"visitor message {i}")
        await expect(console.locator("#transcript .msg:not(.mine) .text").last).to_have_text(
            f"visitor message {i}", timeout=10_000)
        await console.locator("#draft").fill(f"agent reply {i}")
        await console.locator("#draft").press("Enter")
        await wait_bubble(shop, f"agent reply {i}", mine=False)
    await asyncio.sleep(1.5)  # a loop of receipts would go on meanwhile
    reads = [json.loads(f) for f in sent if '"type":"read"' in f]
    assert 1 <= len(reads) <= 6, reads
    assert len({r["seq"] for r in reads}) == len(reads), reads
    await expect(console.locator("#conn")).to_have_text("Connected")
    assert console.watched.errors == []


async def test_console_shows_the_real_status_and_keeps_a_reply_over_the_limit(
        site: Site, new_page: Any, agent_name: Any) -> None:
    name = await agent_name()
    console = await new_page()
    await login(console, site, name, online=False)
    # Logged in but not yet online: the menu must not claim otherwise.
    await expect(console.locator("#status")).to_have_value("offline")
    await console.locator("#status").select_option("online")
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    await write(shop, "Hello?")
    await expect(console.locator("#transcript .msg .text")).to_have_text(["Hello?"],
                                                                         timeout=10_000)
    long_reply = "word " * 900  # 4,500 characters: over the limit of 4,000
    await console.locator("#draft").fill(long_reply)
    await console.locator("#draft").press("Enter")
    await expect(console.locator("#toast")).to_contain_text("the limit is 4000")
    assert await console.locator("#draft").input_value() == long_reply
    await expect(console.locator("#transcript .msg.mine")).to_have_count(0)
    assert console.watched.errors == []


async def test_a_second_tab_shares_the_login_and_logging_out_ends_both(
        site: Site, browser: Any, new_page: Any, agent_name: Any) -> None:
    name = await agent_name()
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    try:
        first = await context.new_page()
        await login(first, site, name)
        sent: list[str] = []
        second = await context.new_page()
        second.on("websocket", lambda ws: ws.on("framesent", lambda d: sent.append(str(d))))
        await second.goto(site.base + "/agent")
        # No login form: the tab uses the session of the first one.
        await expect(second.locator("#conn")).to_have_text("Connected")
        await expect(second.locator("#login")).to_be_hidden()
        await expect(second.locator("#me")).to_have_text(await first.locator("#me").inner_text())
        await expect(second.locator("#status")).to_have_value("online")

        shop = await new_page()
        await open_shop(shop, site.base)
        await open_widget(shop)
        await write(shop, "Hello from the shop")
        for tab in (first, second):
            await expect(tab.locator("#transcript .msg .text")).to_have_text(
                ["Hello from the shop"], timeout=10_000)
        # Routed once, to this agent, whichever tab answers.
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.get(site.base + "/api/agents",
                               headers={"Authorization": f"Bearer {await site.login(name)}"})
        assert [a["open"] for a in r.json()["items"] if a["id"] == name] == [1], r.json()
        reply = "Hi, this is the second tab."
        await second.locator("#draft").fill(reply)
        await second.locator("#draft").press("Enter")
        await wait_bubble(shop, reply, mine=False)
        for tab in (first, second):
            await expect(tab.locator("#transcript .msg.mine .text")).to_have_text(
                [reply], timeout=10_000)
            await expect(tab.locator("#transcript .msg.mine .state")).to_have_text(
                "read", timeout=10_000)
        reads = [json.loads(f) for f in sent if '"type":"read"' in f]
        assert len({r["seq"] for r in reads}) == len(reads), reads
        await expect(first.locator("#conn")).to_have_text("Connected")
        await expect(second.locator("#conn")).to_have_text("Connected")

        token = await first.evaluate("TL.session().token")
        await first.get_by_role("button", name="Log out").click()
        await expect(first.locator("#login")).to_be_visible()
        await expect(second.locator("#login")).to_be_visible(timeout=10_000)
        await expect(second.locator("#workspace")).to_be_hidden()
        # The server ended the session: the token the tabs held works no more.
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.get(site.base + "/api/agents",
                               headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, r.text
        # And a tab opened now asks to log in.
        third = await context.new_page()
        await third.goto(site.base + "/agent")
        await expect(third.locator("#login")).to_be_visible()
    finally:
        await context.close()


async def test_markup_from_a_visitor_is_text_in_the_console(site: Site, new_page: Any,
                                                            agent_name: Any) -> None:
    name = await agent_name()
    console = await new_page()
    await login(console, site, name)
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    await write(shop, XSS)
    await expect(console.locator("#transcript .msg .text")).to_have_text([XSS], timeout=10_000)
    assert await console.locator("#transcript img").count() == 0
    assert await console.locator("#chats .preview").first.inner_text() == XSS
    await console.wait_for_timeout(300)
    assert console.watched.dialogs == [] and shop.watched.dialogs == []


async def test_links_from_a_visitor_open_in_a_new_tab_and_nothing_else_is_a_link(
        site: Site, new_page: Any, agent_name: Any) -> None:
    # The widget made them links; the console showed plain text.
    name = await agent_name()
    said = ("My order: https://shop.example/orders/1182?x=1&y=2. The photo (see "
            "https://example.com/a_(b)) and javascript:alert(1), ftp://example.com/f "
            f'or https://x.example/"{XSS}')
    console, _ = await chat_in_console(site, new_page, name, said)
    text = console.locator("#transcript .msg .text")
    await expect(text).to_have_text([said], timeout=10_000)
    links = text.locator("a")
    await expect(links).to_have_text(["https://shop.example/orders/1182?x=1&y=2",
                                      "https://example.com/a_(b)", "https://x.example/"])
    for i in range(3):
        await expect(links.nth(i)).to_have_attribute("href", await links.nth(i).inner_text())
        await expect(links.nth(i)).to_have_attribute("target", "_blank")
        await expect(links.nth(i)).to_have_attribute("rel", "noopener noreferrer")
    assert await console.locator("#transcript img").count() == 0
    assert console.watched.dialogs == []


async def test_unread_count_and_switching_chats(site: Site, new_page: Any,
                                                agent_name: Any) -> None:
    name = await agent_name()
    console = await new_page()
    await login(console, site, name)
    shops = [await new_page(), await new_page()]
    for i, shop in enumerate(shops):
        await open_shop(shop, site.base)
        await open_widget(shop)
        await write(shop, f"visitor {i} here")
        await expect(console.locator("#chats .item")).to_have_count(i + 1, timeout=10_000)
    # The first chat stays open; the second one counts what its visitor wrote.
    await expect(console.locator("#transcript .msg .text")).to_have_text(["visitor 0 here"])
    await write(shops[1], "are you there?")
    other = console.locator("#chats .item").filter(has_text="are you there?")
    await expect(other.locator(".unread")).to_have_text("2", timeout=10_000)
    assert "2 unread" in (await other.get_attribute("aria-label") or "")
    await other.click()
    await expect(console.locator("#transcript .msg .text")).to_have_text(
        ["visitor 1 here", "are you there?"], timeout=10_000)
    assert await console.locator("#chats .unread").count() == 0


async def test_focus_stays_on_a_chat_as_the_list_changes_and_enter_opens_it_to_reply(
        site: Site, new_page: Any, agent_name: Any) -> None:
    # The list is drawn again on every message: the focused chat lost the focus to <body>.
    name = await agent_name()
    console = await new_page()
    await login(console, site, name)
    shops = [await new_page(), await new_page()]
    for i, shop in enumerate(shops):
        await open_shop(shop, site.base)
        await open_widget(shop)
        await write(shop, f"visitor {i} here")
        await expect(console.locator("#chats .item")).to_have_count(i + 1, timeout=10_000)
    other = console.locator("#chats .item").filter(has_text="visitor 1 here")
    conv = await other.get_attribute("data-conv")
    other = console.locator(f'#chats .item[data-conv="{conv}"]')
    await other.focus()
    await write(shops[0], "one more thing")  # in the chat on show
    await expect(console.locator("#transcript .msg .text").last).to_have_text(
        "one more thing", timeout=10_000)
    await expect(other).to_be_focused()
    await write(shops[1], "are you there?")  # in the focused one, counted unread
    await expect(other.locator(".unread")).to_have_text("2", timeout=10_000)
    await expect(other).to_be_focused()
    # Enter opens it, and the reply box takes the focus: what the chat was picked for.
    await console.keyboard.press("Enter")
    await expect(console.locator("#transcript .msg .text")).to_have_text(
        ["visitor 1 here", "are you there?"])
    await expect(console.locator("#draft")).to_be_focused()
    await console.keyboard.type("Hello")
    await expect(console.locator("#draft")).to_have_value("Hello")
    assert console.watched.errors == []


async def test_focus_stays_on_accept_while_the_queue_counts_the_wait(
        site: Site, new_page: Any, agent_name: Any) -> None:
    # The queue is drawn again each second, its waits counting up.
    name = await agent_name()
    console = await new_page()
    await login(console, site, name, online=False)
    left = await connect(site.ws, "/ws/visitor", await visitor_token(site.base, site="demo"))
    await left.send(type="leave_message", id="lm1", name="Ana", email="ana@example.com",
                    text="Please call me back.")
    await left.expect("ack", ref="lm1")
    await console.locator("#status").select_option("online")
    accept = console.locator("#queue").get_by_role("button", name=re.compile(r"^Accept chat"))
    await expect(accept).to_be_enabled(timeout=10_000)
    await accept.focus()
    await console.wait_for_timeout(2_500)
    await expect(accept).to_be_focused()
    await console.keyboard.press("Enter")
    await expect(console.locator("#chats .item")).to_have_count(1, timeout=10_000)
    await left.close()


async def test_transfer_offers_those_who_speak_the_visitors_language_first(
        site: Site, new_page: Any, agent_name: Any) -> None:
    first = await agent_name(["en"])
    slovene, english = await agent_name(["sl"]), await agent_name(["en"])
    console, shop = await chat_in_console(site, new_page, first, "I need a refund for order 1182.")
    others = [await site.agent_client(slovene), await site.agent_client(english)]
    await console.get_by_role("button", name="Transfer…").click()
    options = console.locator("#transfer #transfer-agent option")
    await expect(options).to_have_count(2, timeout=10_000)
    labels = await options.all_inner_texts()
    assert "does not speak" not in labels[0], labels
    assert labels[1].endswith("does not speak en"), labels
    for other in others:
        await other.close()


async def test_transfer_says_at_once_when_no_agent_is_free_and_offers_a_team(
        site: Site, new_page: Any, agent_name: Any, out_dir: Path) -> None:
    # It showed an empty Agent list, and said why only once Transfer was pressed.
    first, second = await agent_name(), await agent_name()
    other = await site.agent_client(second)
    await other.send(type="status", status="online", capacity=1)
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    await write(shop, "The other agent takes this one.")
    await other.expect("assignment", timeout=10)  # full now: 1 of 1
    console, _ = await chat_in_console(site, new_page, first, "I need a refund.")
    await console.get_by_role("button", name="Transfer…").click()
    dialog = console.locator("#transfer")
    none = dialog.locator("#transfer-none")
    await expect(none).to_contain_text("No other agent is online with free capacity.")
    await expect(none).to_contain_text("You can transfer to a team", timeout=10_000)
    send = dialog.get_by_role("button", name="Transfer", exact=True)
    await expect(send).to_be_disabled()
    agents = dialog.get_by_role("combobox", name="Agent")
    await expect(agents).to_be_disabled()
    await expect(agents).to_have_accessible_description(re.compile("^No other agent is online"))
    await expect(agents.locator("option")).to_have_text([re.compile(r"\(1/1\) · full$")])
    await console.screenshot(path=out_dir / "console-transfer-nobody-free.png")
    # A team can still take it.
    await dialog.get_by_role("radio", name="Team").check()
    await expect(send).to_be_enabled()
    await dialog.get_by_role("radio", name="Agent").check()
    await expect(send).to_be_disabled()
    # Room made while the dialog is open: the agent can be chosen at once.
    await other.send(type="status", status="online", capacity=2)
    await expect(send).to_be_enabled(timeout=10_000)
    await expect(none).to_be_hidden()
    await expect(agents).to_have_value(second)
    await send.click()
    await expect(console.locator("#chats .item")).to_have_count(0, timeout=10_000)
    await other.close()
    assert console.watched.errors == []


async def test_transfer_to_a_team_offers_the_teams_there_are(site: Site, new_page: Any,
                                                              agent_name: Any) -> None:
    first = await agent_name()
    billing = await agent_name(teams=["billing"])
    console, shop = await chat_in_console(site, new_page, first, "A question about my invoice.")
    await console.get_by_role("button", name="Transfer…").click()
    dialog = console.locator("#transfer")
    await dialog.get_by_role("radio", name="Team").check()
    team = dialog.get_by_role("combobox", name="Team")
    await expect(team.locator("option")).to_have_text(["billing", "support"], timeout=10_000)
    await expect(team).to_have_value("support")
    # A team that is gone by the time the transfer arrives: the server refuses it, and
    # the console says so and keeps the chat.
    await team.evaluate("sel => { sel.options[0].value = 'old'; sel.value = 'old'; }")
    await dialog.get_by_role("button", name="Transfer", exact=True).click()
    await expect(console.locator("#toast")).to_contain_text(
        "Transfer failed: no team 'old'", timeout=10_000)
    await expect(console.locator("#chats .item")).to_have_count(1)
    # A team chosen from the list: the chat goes to its queue, and to its agent.
    await console.get_by_role("button", name="Transfer…").click()
    await dialog.get_by_role("radio", name="Team").check()
    await expect(team.locator("option")).to_have_text(["billing", "support"], timeout=10_000)
    await team.select_option("billing")
    await dialog.get_by_role("button", name="Transfer", exact=True).click()
    await expect(console.locator("#chats .item")).to_have_count(0, timeout=10_000)
    other = await site.agent_client(billing)
    got = await other.expect("assignment", timeout=10)
    assert got["reason"] == "transfer", got
    await other.close()
    assert console.watched.errors == []


async def test_a_chat_transferred_in_says_who_passed_it_on(site: Site, new_page: Any,
                                                        agent_name: Any) -> None:
    receiver, sender = await agent_name(), await agent_name()
    console, _ = await chat_in_console(site, new_page, receiver, "First chat, on show.")
    other = await site.agent_client(sender)
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    await write(shop, "Second chat, to be passed on.")
    got = await other.expect("assignment", timeout=10)
    await other.send(type="transfer", conversation=got["conversation"], to_agent=receiver,
                     note="Wants a refund.")
    await expect(console.locator("#toast")).to_have_text(
        f"{sender.capitalize()} transferred {got['visitor']['name']} to you: Wants a refund.",
        timeout=10_000)
    await other.close()


async def test_a_transfer_note_is_shown_once_below_the_history(site: Site, new_page: Any,
                                                                agent_name: Any) -> None:
    # It was shown twice: "Transferred from …: <note>" over the history, and the
    # transfer event with "Note: <note>" in it.
    receiver, sender = await agent_name(), await agent_name()
    console = await new_page()
    await login(console, site, receiver)
    other = await site.agent_client(sender)
    await console.locator("#status").select_option("away")  # the visitor goes to the sender
    await asyncio.sleep(0.3)
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    await write(shop, "I need a refund for order 1182.")
    got = await other.expect("assignment", timeout=10)
    await console.locator("#status").select_option("online")
    await asyncio.sleep(0.3)
    await other.send(type="transfer", conversation=got["conversation"], to_agent=receiver,
                     note="Refund approved, needs bank details.")
    await expect(console.locator("#transcript .msg .text")).to_have_text(
        ["I need a refund for order 1182."], timeout=10_000)
    lines = console.locator("#transcript > li")
    await expect(lines.filter(has_text="Refund approved")).to_have_text([re.compile(
        rf"^Transferred from {sender.capitalize()} to you · \d\d:\d\d\n"
        r"Note: Refund approved, needs bank details\.$")])
    # Below what the visitor said before it, where it happened.
    assert "Refund approved" in await lines.last.inner_text()
    await other.close()
    assert console.watched.errors == []


async def test_transfer_with_a_note_and_close(site: Site, new_page: Any, agent_name: Any) -> None:
    first, second = await agent_name(), await agent_name()
    console, shop = await chat_in_console(site, new_page, first, "I need a refund for order 1182.")
    other = await site.agent_client(second)
    await console.locator("#draft").fill("Let me pass you to a colleague.")
    assert list((await kept_drafts(console, first)).values()) == [
        "Let me pass you to a colleague."]
    await console.get_by_role("button", name="Transfer…").click()
    dialog = console.locator("#transfer")
    await expect(dialog.locator("#transfer-agent option")).to_have_count(1, timeout=10_000)
    note = dialog.get_by_label("Note for the next agent")
    await note.fill("Refund approved, needs bank details.")
    await dialog.get_by_role("button", name="Transfer", exact=True).click()
    got = await other.expect("assignment", timeout=10)
    assert got["reason"] == "transfer" and got["note"] == "Refund approved, needs bank details."
    await expect(console.locator("#chats .item")).to_have_count(0, timeout=10_000)
    assert await kept_drafts(console, first) == {}  # the reply is the next agent's to write
    # The visitor is told the chat was passed on, and to whom.
    now_with = got["events"][-1]["agent"]["name"]
    await shop.locator(f"{W} .sys").filter(
        has_text=f"Your chat was passed to {now_with}").wait_for(timeout=10_000)
    await other.close()

    # The next visitor: closing from the console ends the chat for the visitor.
    shop2 = await new_page()
    await open_shop(shop2, site.base)
    await open_widget(shop2)
    await write(shop2, "second question")
    # The first chat comes back too once the second agent's grace period ends,
    # so pick the new visitor's chat by what they wrote.
    chat = console.locator("#chats .item").filter(has_text="second question")
    await chat.wait_for(timeout=10_000)
    await chat.click()
    await expect(console.locator("#transcript .msg .text")).to_have_text(["second question"])
    # A long last line, as the chat's preview, must not push its × out of the list.
    await console.locator("#draft").fill("Thanks for asking; your parcel left our warehouse "
                                         "this morning and arrives tomorrow before noon.")
    await console.locator("#draft").press("Enter")
    await wait_bubble(shop2, "arrives tomorrow before noon.", mine=False)
    await close_chat(console)
    await shop2.locator(f"{W} form.csat").wait_for(state="visible", timeout=10_000)
    await expect(console.locator("#draft")).to_be_disabled(timeout=5_000)
    # A closed chat can be taken off the list.
    remove = console.get_by_role("button", name=re.compile("^Remove the closed chat with"))
    await expect(remove).to_have_count(1)
    button, sidebar = await remove.bounding_box(), await console.locator("nav.side").bounding_box()
    assert button is not None and sidebar is not None
    assert button["x"] + button["width"] <= sidebar["x"] + sidebar["width"], (button, sidebar)
    await remove.click()
    await expect(remove).to_have_count(0)
    await expect(console.locator("#chats .item")).to_have_count(0)
    await expect(console.locator("#empty")).to_be_visible()


async def test_an_unsent_reply_comes_back_after_a_reload_until_it_is_sent(
        site: Site, new_page: Any, agent_name: Any) -> None:
    name = await agent_name()
    console, shop = await chat_in_console(site, new_page, name, "Where is my order?")
    other = await new_page()
    await open_shop(other, site.base)
    await open_widget(other)
    await write(other, "Can I change my address?")
    chats = console.locator("#chats .item")
    await expect(chats).to_have_count(2, timeout=10_000)
    sent = frames_sent(console)
    # A reply half written in each chat, and one the console kept for a chat gone since.
    await console.locator("#draft").fill(NOT_MY_JOB)
    await chats.filter(has_text="Can I change my address?").click()
    await console.locator("#draft").fill("Yes, which address")
    await console.evaluate("""name => {
        const key = 'tactline:drafts:' + name, kept = JSON.parse(sessionStorage.getItem(key));
        kept.c_gone = 'For a chat that is no longer here';
        sessionStorage.setItem(key, JSON.stringify(kept));
    }""", name)

    await console.reload()
    await expect(console.locator("#conn")).to_have_text("Connected", timeout=10_000)
    await expect(chats).to_have_count(2, timeout=10_000)
    await chats.filter(has_text="Where is my order?").click()
    await expect(console.locator("#draft")).to_have_value(NOT_MY_JOB)
    # The coach checks the draft again, as if it had just been typed.
    await expect(console.locator("#backdrop mark")).to_have_count(2, timeout=5_000)
    assert NOT_MY_JOB in [f.get("text") for f in sent if f["type"] == "draft"], sent
    await chats.filter(has_text="Can I change my address?").click()
    await expect(console.locator("#draft")).to_have_value("Yes, which address")
    await console.locator("#draft").press("End")
    await console.locator("#draft").type("?")
    await console.locator("#draft").press("Enter")
    await wait_bubble(other, "Yes, which address?", mine=False)
    kept = await kept_drafts(console, name)
    assert list(kept.values()) == [NOT_MY_JOB], kept  # the sent one and the stale one are gone

    # Closing the chat drops its draft too: after a reload both reply boxes are empty.
    await chats.filter(has_text="Where is my order?").click()
    await close_chat(console)
    await expect(console.locator("#draft")).to_be_disabled(timeout=10_000)
    assert await kept_drafts(console, name) == {}
    await console.reload()
    await expect(console.locator("#conn")).to_have_text("Connected", timeout=10_000)
    await expect(chats.first).to_be_visible(timeout=10_000)
    for i in range(await chats.count()):
        await chats.nth(i).click()
        await expect(console.locator("#draft")).to_have_value("")
    assert console.watched.errors == []


async def test_closing_a_chat_asks_first(site: Site, new_page: Any, agent_name: Any) -> None:
    name = await agent_name()
    console, shop = await chat_in_console(site, new_page, name, "That's all, thanks.")
    visitor = await console.locator("#chat-title").inner_text()
    close = console.get_by_role("button", name="Close chat")
    dialog = console.get_by_role("dialog", name=f"Close the chat with {visitor}?")
    # Escape and Cancel leave the chat as it was.
    await close.click()
    await expect(dialog).to_be_visible()
    await console.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(close).to_be_focused()  # back where the keyboard left off
    await close.click()
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    await console.wait_for_timeout(500)  # a close frame would have been answered by now
    closed = console.locator("#transcript .sys").filter(has_text="Chat closed by")
    await expect(closed).to_have_count(0)
    await expect(console.locator("#draft")).to_be_enabled()
    await expect(shop.locator(f"{W} form.csat")).to_be_hidden()
    # From the keyboard: Enter on the button asks, Enter again closes.
    await close.focus()
    await console.keyboard.press("Enter")
    await expect(dialog.get_by_role("button", name="Close", exact=True)).to_be_focused()
    await console.keyboard.press("Enter")
    await shop.locator(f"{W} form.csat").wait_for(state="visible", timeout=10_000)
    await expect(console.locator("#draft")).to_be_disabled(timeout=5_000)
    await expect(closed).to_have_count(1)
    assert console.watched.errors == []


async def test_a_chat_back_from_an_agent_who_went_offline_says_so(
        site: Site, new_page: Any, agent_name: Any) -> None:
    gone, name = await agent_name(), await agent_name()
    first = await site.agent_client(gone)
    visitor = await connect(site.ws, "/ws/visitor", await visitor_token(site.base, site="demo"))
    await visitor.say("My parcel is late.")
    await first.expect("assignment", timeout=10)
    console = await new_page()
    await login(console, site, name)
    await first.send(type="status", status="offline")
    await expect(console.locator("#transcript .msg .text")).to_have_text(
        ["My parcel is late."], timeout=10_000)
    lines = console.locator("#transcript .sys")
    await expect(lines.filter(has_text="Back in the queue")).to_have_text(
        re.compile(rf"^Back in the queue: {gone.capitalize()} went offline · \d\d:\d\d$"))
    await expect(lines.filter(has_text="Transferred")).to_have_count(0)
    for client in (first, visitor):
        await client.close()
    assert console.watched.errors == []


async def test_a_take_over_says_the_supervisor_took_the_chat_over(site: Site, new_page: Any,
                                                                   agent_name: Any) -> None:
    name = await agent_name()
    console = await new_page()
    await login(console, site, name)
    visitor = await connect(site.ws, "/ws/visitor", await visitor_token(site.base, site="demo"))
    conv = (await visitor.say("My parcel is late."))["conversation"]
    await expect(console.locator("#transcript .msg .text")).to_have_text(
        ["My parcel is late."], timeout=10_000)
    visitor_name = await console.locator("#chat-title").inner_text()
    supervisor = await connect(site.ws, "/ws/agent", await site.login("supervisor"))
    await supervisor.send(type="take_over", conversation=conv)
    await expect(console.locator("#toast")).to_have_text(
        f"Ana (supervisor) took over the chat with {visitor_name}", timeout=10_000)
    await expect(console.locator("#chats .item")).to_have_count(0)
    for client in (visitor, supervisor):
        await client.close()
    assert console.watched.errors == []


async def test_a_supervisor_reads_a_take_over_as_their_own_not_as_a_transfer(
        site: Site, new_page: Any, agent_name: Any) -> None:
    name = await agent_name()
    agent = await site.agent_client(name)
    visitor = await connect(site.ws, "/ws/visitor", await visitor_token(site.base, site="demo"))
    await visitor.say("My parcel is late.")
    conv = (await agent.expect("assignment", timeout=10))["conversation"]
    console = await new_page()
    await login(console, site, "supervisor", online=False)
    supervisor = await connect(site.ws, "/ws/agent", await site.login("supervisor"))
    await supervisor.send(type="take_over", conversation=conv, note="The customer asked for me.")
    await expect(console.locator("#transcript .msg .text")).to_have_text(
        ["My parcel is late."], timeout=10_000)
    visitor_name = await console.locator("#chat-title").inner_text()
    lines = console.locator("#transcript .sys")
    # Once, in the history (not again over it, as "You took over from …: <note>").
    await expect(lines.filter(has_text="took over")).to_have_text([
        re.compile(rf"^You took over the chat with {visitor_name} from {name.capitalize()} · "
                   r"\d\d:\d\d\nNote: The customer asked for me\.$")])
    await expect(lines.filter(has_text="Transferred")).to_have_count(0)
    await expect(lines.filter(has_text="(supervisor)")).to_have_count(0)
    for client in (agent, visitor, supervisor):
        await client.close()
    assert console.watched.errors == []


async def test_supervisor_hands_a_taken_over_chat_back(site: Site, new_page: Any,
                                                      agent_name: Any) -> None:
    name = await agent_name()
    agent = await site.agent_client(name)
    visitor = await connect(site.ws, "/ws/visitor", await visitor_token(site.base, site="demo"))
    await visitor.say("My parcel is late.")
    conv = (await agent.expect("assignment", timeout=10))["conversation"]
    console = await new_page()
    await login(console, site, "supervisor", online=False)
    back = console.get_by_role("button", name=f"Hand back to {name.capitalize()}")
    await expect(back).to_have_count(0)  # nothing taken over yet
    supervisor = await connect(site.ws, "/ws/agent", await site.login("supervisor"))
    await supervisor.send(type="take_over", conversation=conv)
    await agent.expect("transferred", conversation=conv, timeout=10)
    await expect(console.locator("#transcript .msg .text")).to_have_text(
        ["My parcel is late."], timeout=10_000)
    await expect(back).to_be_visible()
    visitor_name = await console.locator("#chat-title").inner_text()
    await console.locator("#draft").fill("Hello, I'm the supervisor; one moment.")
    await console.locator("#draft").press("Enter")
    await expect(console.locator("#transcript .msg.mine .state")).to_have_count(1)
    # Offline, the agent cannot take it back: the console says so and keeps the chat.
    await agent.send(type="status", status="away")
    await agent.expect("queue_snapshot")
    await back.click()
    await expect(console.locator("#toast")).to_contain_text(
        f"Could not hand the chat back: {name.capitalize()} is not online", timeout=10_000)
    await expect(console.locator("#chats .item")).to_have_count(1)
    await agent.send(type="status", status="online", capacity=5)
    await agent.expect("queue_snapshot")
    await back.click()
    got = await agent.expect("assignment", conversation=conv, timeout=10)
    assert got["reason"] == "transfer" and got["from_agent"]["id"] == "supervisor", got
    assert [e["text"] for e in got["events"] if e["type"] == "message"] == [
        "My parcel is late.", "Hello, I'm the supervisor; one moment."]
    await expect(console.locator("#chats .item")).to_have_count(0, timeout=10_000)
    await expect(console.locator("#toast")).to_have_text(
        f"The chat with {visitor_name} was transferred.", timeout=10_000)
    # The agent answers again; the visitor was told who is with them.
    await visitor.expect("transferred", agent={"id": name, "name": name.capitalize()},
                         timeout=10)
    await agent.say("I'm back with you.", conversation=conv)
    await visitor.expect("message", text="I'm back with you.")
    for client in (agent, visitor, supervisor):
        await client.close()


async def test_a_chat_handed_back_after_a_take_over_shows_at_once_and_stays(
        site: Site, new_page: Any, agent_name: Any) -> None:
    name = await agent_name()
    console = await new_page()
    await login(console, site, name)
    visitor = await connect(site.ws, "/ws/visitor", await visitor_token(site.base, site="demo"))
    conv = (await visitor.say("My parcel is late."))["conversation"]
    chats = console.locator("#chats .item")
    await expect(chats).to_have_count(1, timeout=10_000)
    supervisor = await connect(site.ws, "/ws/agent", await site.login("supervisor"))
    await supervisor.send(type="take_over", conversation=conv)
    await supervisor.expect("assignment", conversation=conv, timeout=10)
    await expect(chats).to_have_count(0, timeout=10_000)
    await supervisor.send(type="transfer", conversation=conv, to_agent=name, id="hb1")
    await visitor.expect("transferred", agent={"id": name, "name": name.capitalize()},
                         timeout=10)
    # Back in the agent's open console at once, with the whole transcript, where the
    # take-over reads as one.
    await expect(chats).to_have_count(1, timeout=10_000)
    await expect(console.locator("#transcript .msg .text")).to_have_text(
        ["My parcel is late."], timeout=10_000)
    visitor_name = await console.locator("#chat-title").inner_text()
    lines = console.locator("#transcript .sys")
    await expect(lines.filter(has_text="took over")).to_have_text(re.compile(
        rf"^Ana \(supervisor\) took over the chat with {visitor_name} from "
        rf"{name.capitalize()} · \d"))
    # And it stays there as the chat goes on, from either side.
    await visitor.say("Are you there?")
    await expect(console.locator("#transcript .msg .text")).to_have_text(
        ["My parcel is late.", "Are you there?"], timeout=10_000)
    await console.locator("#draft").fill("Yes, I'm back with you.")
    await console.locator("#draft").press("Enter")
    await visitor.expect("message", text="Yes, I'm back with you.", timeout=10)
    await asyncio.sleep(0.5)
    await expect(chats).to_have_count(1)
    for client in (visitor, supervisor):
        await client.close()


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two bounding boxes share any area."""
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


CONTROLS = "button, input, select, textarea, a[href], [tabindex]"


async def visible_boxes(page: Any, selector: str) -> list[dict[str, Any]]:
    """The boxes of the visible elements matching ``selector``, each with its ``label``."""
    return list(await page.evaluate("""sel => [...document.querySelectorAll(sel)]
        .filter(el => el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden')
        .map(el => { const r = el.getBoundingClientRect();
          return {x: r.x, y: r.y, width: r.width, height: r.height,
                  label: el.id || el.getAttribute('aria-label') || el.textContent.slice(0, 40)}; })
        .filter(b => b.width && b.height)""", selector))


@pytest.mark.parametrize("width,height", [(1280, 800), (1024, 700)])
async def test_cards_and_toasts_leave_the_conversation_and_controls_in_view(
        site: Site, new_page: Any, agent_name: Any, out_dir: Path, width: int,
        height: int) -> None:
    name = await agent_name()
    console = await new_page(width=width, height=height)
    await login(console, site, name)
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    await write(shop, "This is ridiculous, I've called three times already about my parcel.")
    joined = console.locator("#transcript .sys").filter(has_text="joined")
    await expect(joined).to_have_count(1, timeout=10_000)
    cards = console.locator("#assist .card")
    await expect(cards).to_have_count(2, timeout=10_000)  # upset, and contacted us before
    await console.locator("#draft").fill("Please send me your card number and CVV.")
    await console.locator("#draft").press("Enter")
    await expect(console.locator("#refusal")).to_be_visible(timeout=10_000)
    other = await new_page()
    await open_shop(other, site.base)
    await open_widget(other)
    await write(other, "Hello?")
    await expect(console.locator("#toast")).to_contain_text("New chat: ", timeout=10_000)
    await console.screenshot(path=out_dir / f"console-cards-{width}x{height}.png")

    # The conversation keeps most of its pane, its lines in view, under no card.
    pane = await console.locator("#conversation").bounding_box()
    transcript = await console.locator("#transcript").bounding_box()
    assert pane is not None and transcript is not None
    assert transcript["height"] >= pane["height"] / 3, (transcript, pane)
    for line in (joined, console.locator("#transcript .msg").first):
        box = await line.bounding_box()
        assert box is not None
        assert transcript["y"] <= box["y"] and (
            box["y"] + box["height"] <= transcript["y"] + transcript["height"]), (box, transcript)
    coaching = await visible_boxes(console, "#assist .card, #refusal, #flags li, #popover")
    assert len(coaching) >= 3, coaching
    for box in coaching:
        assert not overlap(box, transcript), (box, transcript)
    # The reply box and its Send button are on the page.
    for control in (console.locator("#draft"), console.locator("#composer button")):
        box = await control.bounding_box()
        assert box is not None and box["y"] + box["height"] <= height, box
    # The toast covers nothing anyone could click, nor the conversation.
    toast = await console.locator("#toast").bounding_box()
    assert toast is not None
    for box in await visible_boxes(console, CONTROLS) + [transcript]:
        assert not overlap(toast, box), (toast, box)
    # Below the refusal, one card open at a time: the most urgent.
    await expect(cards.locator(".body:visible")).to_have_count(1)
    await cards.nth(1).get_by_role("button", name="The customer has contacted us before").click()
    await expect(cards.nth(1).locator(".body")).to_be_visible()
    await expect(cards.nth(1).locator(".toggle")).to_have_attribute("aria-expanded", "true")
    await expect(cards.first.locator(".body")).to_be_hidden()
    await console.locator("#coaching").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    await console.screenshot(path=out_dir / f"console-cards-{width}x{height}-scrolled.png")
    assert console.watched.errors == []


async def test_waiting_visitors_are_listed_in_the_queue(site: Site, new_page: Any,
                                                        agent_name: Any) -> None:
    name = await agent_name()
    console = await new_page()
    await login(console, site, name, online=False)
    await console.locator("#capacity").fill("1")
    await console.locator("#capacity").dispatch_event("change")
    await console.locator("#status").select_option("online")
    visitors = []
    for text in ("first in line", "second in line"):
        v = await connect(site.ws, "/ws/visitor", await visitor_token(site.base, site="demo"))
        await v.say(text)
        visitors.append(v)
    queued = console.locator("#queue .queue-item")
    await expect(queued).to_have_count(1, timeout=10_000)
    await expect(queued.locator(".preview")).to_have_text("second in line")
    # Who waits, by the label that tells anonymous visitors apart.
    await expect(queued.locator(".who")).to_have_text(re.compile(r"^Visitor [0-9A-F]{4} · en$"))
    await console.locator("#capacity").fill("2")
    await console.locator("#capacity").dispatch_event("change")
    await expect(console.locator("#chats .item")).to_have_count(2, timeout=10_000)
    await expect(queued).to_have_count(0, timeout=10_000)
    for v in visitors:
        await v.close()


async def test_accept_is_offered_only_while_the_agent_is_online_with_room(
        site: Site, new_page: Any, agent_name: Any) -> None:
    # The server refuses ``accept`` from an agent who is offline, away or full
    # (no_capacity): the console lists the queue all the same, with Accept disabled and
    # a hint that says why.
    name = await agent_name()
    console = await new_page()
    await login(console, site, name, online=False)
    left = await connect(site.ws, "/ws/visitor", await visitor_token(site.base, site="demo"))
    await left.send(type="leave_message", id="lm1", name="Ana Kovačević-Petrović",
                    email="ana@example.com", text="Please call me back about order 1182.")
    answer = await left.expect("ack", "error", ref="lm1")
    assert answer["type"] == "ack", answer  # nobody online: a message left for the next agent
    queued = console.locator("#queue .queue-item")
    accept = queued.get_by_role("button", name=re.compile(r"^Accept chat"))
    hint = console.locator("#queue-hint")
    await expect(queued).to_have_count(1, timeout=10_000)
    await expect(accept).to_be_disabled()
    await expect(hint).to_have_text("Go online to accept chats.")
    await expect(accept).to_have_accessible_description("Go online to accept chats.")
    # Who waits is said in full, beside the button rather than under it.
    who = queued.locator(".who")
    await expect(who).to_have_text("Ana Kovačević-Petrović left a message · en")
    # (Both at once: the queue is drawn again each second, its waits counting up.)
    who_box, button_box = await queued.evaluate("""li => [li.querySelector('.who'),
        li.querySelector('button')].map(el => el.getBoundingClientRect().toJSON())""")
    assert not overlap(who_box, button_box), (who_box, button_box)
    await console.locator("#status").select_option("online")
    await expect(accept).to_be_enabled(timeout=10_000)
    await expect(hint).to_be_hidden()
    await console.locator("#status").select_option("away")
    await expect(accept).to_be_disabled(timeout=10_000)
    await expect(hint).to_have_text("Go online to accept chats.")
    await console.locator("#status").select_option("online")
    await accept.click()
    await expect(console.locator("#chats .item")).to_have_count(1, timeout=10_000)
    await expect(queued).to_have_count(0, timeout=10_000)
    # Full: the next visitor waits in the queue, and the hint says what would make room.
    await console.locator("#capacity").fill("1")
    await console.locator("#capacity").dispatch_event("change")
    waiting = await connect(site.ws, "/ws/visitor", await visitor_token(site.base, site="demo"))
    await waiting.say("Is anyone there?")
    await expect(queued).to_have_count(1, timeout=10_000)
    await expect(accept).to_be_disabled()
    await expect(hint).to_have_text(
        "You have 1 of 1 chats: close one or raise your capacity to accept another.")
    assert not [text for text in console.watched.trail if "no_capacity" in text]
    assert console.watched.errors == []
    # A supervisor sees the queue too, but only agents accept (``forbidden``).
    boss = await new_page()
    await login(boss, site, "supervisor", online=False)
    await expect(boss.locator("#queue .queue-item")).to_have_count(1, timeout=10_000)
    await expect(boss.locator("#queue .queue-item button")).to_be_disabled()
    await expect(boss.locator("#queue-hint")).to_have_text(
        "Agents accept waiting chats; take one over from the Live review page.")
    for v in (left, waiting):
        await v.close()


# ------------------------------------------------------------------ scripted /ws/agent


class ScriptedAgentSocket:
    """Stands in for /ws/agent: answers hello with one assigned chat and records frames."""

    CONV = "c_scripted0001"

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.ws: Any = None
        self.drafts: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def handler(self, ws: Any) -> None:
        self.ws = ws
        ws.on_message(self.on_message)

    def send(self, **frame: Any) -> None:
        frame.setdefault("v", 1)
        self.ws.send(json.dumps(frame))

    def on_message(self, raw: str | bytes) -> None:
        frame = json.loads(raw)
        self.frames.append(frame)
        if frame["type"] == "hello":
            self.send(type="welcome", role="agent", user={"id": "jelena", "name": "Jelena"},
                      agents_online=1, conversations=[{
                          "conversation": self.CONV, "status": "assigned", "lang": "en",
                          "visitor": {"id": "v_1", "name": "Ana", "lang": "en"},
                          "agent": {"id": "jelena", "name": "Jelena"}, "history_truncated": False,
                          "events": [{"type": "message", "conversation": self.CONV,
                                      "seq": "1000-0", "ts": int(time.time() * 1000) - 60_000,
                                      "id": "m1",
                                      "from": {"role": "visitor", "id": "v_1", "name": "Ana"},
                                      "text": "My parcel is late again!"}]}])
        elif frame["type"] == "draft":
            self.drafts.put_nowait(frame)
        elif frame["type"] == "message":
            self.send(type="ack", ref=frame["id"], conversation=self.CONV, seq="2000-0",
                      duplicate=False)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    async def answer_draft_with(self, text: str, flags: list[dict[str, Any]]) -> None:
        """Wait for the draft with ``text`` and answer it with ``flags``."""
        while True:
            draft = await asyncio.wait_for(self.drafts.get(), 10)
            if draft["text"] == text:
                self.send(type="coach", conversation=self.CONV, draft_id=draft["draft_id"],
                          flags=flags)
                return


async def scripted_console(site: Site, new_page: Any) -> tuple[Any, ScriptedAgentSocket]:
    page = await new_page()
    fake = ScriptedAgentSocket()
    await page.route_web_socket(site.ws + "/ws/agent", fake.handler)
    await login(page, site, "agent1", online=False)
    await expect(page.locator("#transcript .msg .text")).to_have_text(["My parcel is late again!"])
    return page, fake


async def test_composer_underlines_flags_and_applies_a_suggestion(site: Site, new_page: Any,
                                                                 out_dir: Path) -> None:
    page, fake = await scripted_console(site, new_page)
    await page.locator("#draft").fill(NOT_MY_JOB)
    await fake.answer_draft_with(NOT_MY_JOB, FLAGS)
    marks = page.locator("#backdrop mark")
    await expect(marks).to_have_text(["I don't know", "that's not my job"], timeout=5_000)
    await expect(page.locator("#flags li")).to_have_count(2)
    # Hovering the first underline shows the reason and the alternative.
    box = await marks.first.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + 5, box["y"] + box["height"] / 2)
    popover = page.locator("#popover")
    await expect(popover).to_be_visible(timeout=5_000)
    await expect(popover).to_contain_text("Say what you will do instead.")
    await page.screenshot(path=out_dir / "console-flag.png")
    await popover.get_by_role("button", name="Let me find out for you").click()
    applied = "Let me find out for you, that's not my job."
    await expect(page.locator("#draft")).to_have_value(applied)
    # The other flag was computed for the old text: gone until the coach answers the new one.
    await expect(marks).to_have_count(0)
    moved = {**FLAGS[1], "start": 25, "end": 42}
    await fake.answer_draft_with(applied, [moved])
    await expect(marks).to_have_text(["that's not my job"], timeout=5_000)
    # The keyboard shortcut applies the flag at the cursor.
    await page.locator("#draft").press("End")
    await page.locator("#draft").press("ArrowLeft")
    await page.locator("#draft").press("ArrowLeft")
    await page.locator("#draft").press("Alt+Enter")
    fixed = "Let me find out for you, I'll make sure the right team handles this."
    await expect(page.locator("#draft")).to_have_value(fixed)
    await fake.answer_draft_with(fixed, [])
    await page.locator("#draft").press("Enter")
    await expect(page.locator("#transcript .msg.mine .text")).to_have_text([fixed])
    sent = fake.of_type("message")[-1]
    assert sent["text"] == fixed and sent["conversation"] == fake.CONV
    assert isinstance(sent["draft_id"], int) and "override" not in sent


async def test_escape_closes_the_suggestion_popover_and_keeps_the_caret(
        site: Site, new_page: Any) -> None:
    # Escape closed it, and the key's release opened it again at once.
    page, fake = await scripted_console(site, new_page)
    draft, popover = page.locator("#draft"), page.locator("#popover")
    await draft.fill(NOT_MY_JOB)
    await fake.answer_draft_with(NOT_MY_JOB, FLAGS)
    await expect(page.locator("#backdrop mark")).to_have_count(2, timeout=5_000)
    caret = "el => [el.selectionStart, el.selectionEnd]"
    await draft.press("Home")
    for _ in range(4):
        await draft.press("ArrowRight")
    await expect(popover).to_be_visible()
    await draft.press("Escape")
    await page.wait_for_timeout(200)
    await expect(popover).to_be_hidden()
    assert await draft.evaluate(caret) == [4, 4]
    # Open again by moving the caret; from its suggestion, Escape goes back to the draft.
    await draft.press("ArrowRight")
    await expect(popover).to_be_visible()
    await popover.get_by_role("button").first.focus()
    await page.keyboard.press("Escape")
    await expect(popover).to_be_hidden()
    await expect(draft).to_be_focused()
    assert await draft.evaluate(caret) == [5, 5]
    await expect(draft).to_have_value(NOT_MY_JOB)
    await page.keyboard.type("X")  # typed where the caret was
    await expect(draft).to_have_value("I donX't know, that's not my job.")


async def test_stale_coach_answers_are_ignored(site: Site, new_page: Any) -> None:
    page, fake = await scripted_console(site, new_page)
    await page.locator("#draft").fill(NOT_MY_JOB)
    old = await asyncio.wait_for(fake.drafts.get(), 10)
    await page.locator("#draft").fill("Thanks for waiting.")
    fake.send(type="coach", conversation=fake.CONV, draft_id=old["draft_id"], flags=FLAGS)
    await page.wait_for_timeout(300)
    assert await page.locator("#backdrop mark").count() == 0


async def test_sensitive_data_refusal_offers_send_anyway(site: Site, new_page: Any) -> None:
    page, fake = await scripted_console(site, new_page)
    text = "Please send me your card number and CVV."
    await page.locator("#draft").fill(text)
    await page.locator("#draft").press("Enter")
    await expect(page.locator("#transcript .msg.mine")).to_have_count(1)
    ref = fake.of_type("message")[-1]["id"]
    # As the server sends it: the suggestions fitted to the words they replace.
    fake.send(type="error", code="sensitive_data", ref=ref,
              message="This message asks for data that must never be shared in chat. Use "
                      "the suggestion, or resend with override to send it anyway.",
              flags=[{"rule": "en.sensitive.card", "category": "sensitive_data_request",
                      "severity": "alert", "start": 7, "end": 39,
                      "text": "send me your card number and CVV",
                      "message": "Never ask for card details.",
                      "suggestions": ["use the secure payment link I'm sending you",
                                      "I'll send you a secure form for that"]}],
              suggestions=["use the secure payment link I'm sending you",
                           "I'll send you a secure form for that"])
    refusal = page.locator("#refusal")
    await expect(refusal).to_be_visible(timeout=5_000)
    # Why, as the coach's flag says it; what to do, in the words of the buttons (the
    # frame's message is for developers: "resend with override").
    await expect(refusal.locator(".why")).to_have_text("Never ask for card details.")
    await expect(refusal.locator(".what-now")).to_have_text(
        "Send anyway sends it as it is; your supervisor will see that you did.")
    await expect(refusal).not_to_contain_text("override")
    await expect(page.locator("#transcript .msg.mine")).to_have_count(0)
    # Each suggestion reads as the sentence it becomes, not as "Use: use the…".
    suggested = refusal.locator(".use")
    await expect(suggested).to_have_text(["Use the secure payment link I'm sending you.",
                                          "I'll send you a secure form for that."])
    await expect(refusal).not_to_contain_text("Use:")
    # A click puts it in place of the sentence that asked, for the agent to check.
    await refusal.get_by_role(
        "button", name="Replace “Please send me your card number and CVV.” with "
                       "“I'll send you a secure form for that.”").click()
    await expect(page.locator("#draft")).to_have_value("I'll send you a secure form for that.")
    await expect(refusal).to_be_hidden()
    # Sent as it was, on purpose: the same message id, marked as an override.
    await page.locator("#draft").fill(text)
    await page.locator("#draft").press("Enter")
    ref = fake.of_type("message")[-1]["id"]
    fake.send(type="error", code="sensitive_data", ref=ref,
              message="Resend with override to send it anyway.",
              flags=[], suggestions=["please use the secure payment link"])
    await expect(suggested).to_have_text(["Please use the secure payment link."], timeout=5_000)
    await expect(refusal).not_to_contain_text("override")
    await refusal.get_by_role("button", name="Send anyway").click()
    resent = fake.of_type("message")[-1]
    assert resent["id"] == ref and resent["override"] is True and resent["text"] == text
    await expect(page.locator("#transcript .msg.mine .text")).to_have_text([text])


async def test_scripts_nudges_and_whispers(site: Site, new_page: Any) -> None:
    page, fake = await scripted_console(site, new_page)
    fake.send(type="script", conversation=fake.CONV, category="frustration",
              cue={"seq": "1000-0", "start": 0, "end": 24, "text": "My parcel is late again!"},
              message="Acknowledge the frustration before the facts.",
              scripts=["I'm sorry about the delay, Ana. I understand how frustrating this is."])
    card = page.locator("#assist .card.script")
    await expect(card).to_contain_text("The customer is upset", timeout=5_000)
    await expect(card.locator(".cue")).to_have_text("“My parcel is late again!”")
    await card.get_by_role("button", name="Insert: I'm sorry about the delay").click()
    await expect(page.locator("#draft")).to_have_value(
        "I'm sorry about the delay, Ana. I understand how frustrating this is.")
    await expect(card).to_have_count(0)  # used: it makes room for the conversation
    fake.send(type="nudge", conversation=fake.CONV, category="hold_without_update",
              rule="conversation.hold_without_update", severity="warning",
              message="Ana has waited 2 minutes without an update.",
              suggestions=["Thanks for waiting, I'm still checking."], waited_s=120)
    nudge = page.locator("#assist .card.nudge")
    await expect(nudge).to_contain_text("waiting 2 min", timeout=5_000)
    await nudge.get_by_role("button", name="Dismiss").click()
    await expect(nudge).to_have_count(0)
    fake.send(type="nudge", conversation=fake.CONV, category="hold_without_update",
              rule="conversation.hold_without_update", severity="warning",
              message="Ana has waited 3 minutes without an update.",
              suggestions=["Thanks for waiting, I'm still checking."], waited_s=180)
    await expect(nudge).to_contain_text("waiting 3 min", timeout=5_000)
    await page.locator("#draft").press("Enter")  # the script inserted above, sent
    await expect(nudge).to_have_count(0)  # the update the customer waited for
    fake.send(**{"type": "whisper", "conversation": fake.CONV,
                 "from": {"id": "ana", "name": "Ana S."}, "text": XSS, "ts": 3000})
    whisper = page.locator("#transcript .whisper")
    await expect(whisper).to_contain_text("only you see this", timeout=5_000)
    await expect(whisper).to_contain_text(XSS)
    assert await page.locator("#transcript img").count() == 0


async def test_an_upset_card_quotes_what_the_customer_said_and_the_header_names_them(
        site: Site, new_page: Any) -> None:
    page, fake = await scripted_console(site, new_page)
    # The chat is told by the visitor's name; its id is for a tooltip only.
    await expect(page.locator("#chat-title")).to_have_text("Ana")
    await expect(page.locator("#chat-meta")).not_to_contain_text(fake.CONV)
    await expect(page.locator("#chat-meta")).to_have_attribute("title", f"Chat {fake.CONV}")
    fake.send(type="script", conversation=fake.CONV, category="frustration",
              cue={"seq": "1000-0", "start": 21, "end": 24, "text": "!!!",
                   "said": "My parcel is late again!!!"},
              message="Acknowledge the frustration before the facts.",
              scripts=["I'm sorry about the delay, Ana."])
    cue = page.locator("#assist .card.script .cue")
    await expect(cue).to_have_text("“My parcel is late again!!!”", timeout=5_000)
    await expect(cue.locator("mark")).to_have_text("!!!")


async def test_many_cards_leave_the_conversation_and_reply_box_in_view(site: Site,
                                                                     new_page: Any) -> None:
    page, fake = await scripted_console(site, new_page)
    await page.set_viewport_size({"width": 1366, "height": 768})
    for category in ("frustration", "repeat_contact", "escalation_request"):
        fake.send(type="script", conversation=fake.CONV, category=category,
                  cue={"seq": "1000-0", "start": 0, "end": 24, "text": "My parcel is late again!"},
                  message="Acknowledge it before the facts.",
                  scripts=["I'm sorry about the delay, Ana. I understand how frustrating "
                           "this is, and I'll look into it right now."] * 2)
    fake.send(type="nudge", conversation=fake.CONV, category="hold_without_update",
              rule="conversation.hold_without_update", severity="warning",
              message="Ana has waited 2 minutes without an update.",
              suggestions=["Thanks for waiting, I'm still checking."], waited_s=120)
    await expect(page.locator("#assist .card")).to_have_count(4, timeout=5_000)
    draft = await page.locator("#draft").bounding_box()
    transcript = await page.locator("#transcript").bounding_box()
    assert draft is not None and transcript is not None
    assert draft["y"] + draft["height"] <= 768, draft
    assert transcript["height"] >= 120, transcript


THREE_FLAGS_DRAFT = "I don't know, that's not my job, calm down."
THREE_FLAGS = FLAGS + [
    {"rule": "en.dismissive.calm_down", "category": "dismissive", "severity": "alert",
     "start": 33, "end": 42, "text": "calm down", "message": "Acknowledge the feeling instead.",
     "suggestions": ["I understand how frustrating this is",
                     "I'm sorry this has taken so long, let me sort it out",
                     "I can see why you are upset, and I'll help you right away"]},
]
THREE_FLAGS[0] = {**THREE_FLAGS[0], "suggestions": [
    "Let me find out for you", "I'll check that for you right away",
    "Give me a moment to look into it"]}
THREE_FLAGS[1] = {**THREE_FLAGS[1], "suggestions": [
    "I'll make sure the right team handles this",
    "I'll get you to the colleague who handles this, with everything you told me"]}


@pytest.mark.parametrize("width,height", [(1280, 720), (1440, 900)])
async def test_three_flags_and_cards_leave_the_latest_messages_in_view(
        site: Site, new_page: Any, width: int, height: int) -> None:
    page, fake = await scripted_console(site, new_page)
    await page.set_viewport_size({"width": width, "height": height})
    now = int(time.time() * 1000)
    for i in range(1, 13):
        fake.send(**{"type": "message", "conversation": fake.CONV, "seq": f"{1000 + i}-0",
                     "ts": now - 60_000 + i * 1000, "id": f"m{i + 1}",
                     "from": {"role": "visitor", "id": "v_1", "name": "Ana"},
                     "text": f"And another thing, number {i}: where is my parcel?"})
    latest = page.locator("#transcript .msg").last
    await expect(latest).to_contain_text("number 12")
    for category in ("frustration", "repeat_contact"):
        fake.send(type="script", conversation=fake.CONV, category=category,
                  cue={"seq": "1012-0", "start": 0, "end": 16, "text": "And another thing",
                       "said": "And another thing, number 12: where is my parcel?"},
                  message="Acknowledge it before the facts.",
                  scripts=["I'm sorry about the delay, Ana. I understand how frustrating "
                           "this is, and I'll look into it right now."] * 2)
    await expect(page.locator("#assist .card")).to_have_count(2, timeout=5_000)
    await page.locator("#draft").fill(THREE_FLAGS_DRAFT)
    await fake.answer_draft_with(THREE_FLAGS_DRAFT, THREE_FLAGS)
    await expect(page.locator("#flags li")).to_have_count(3, timeout=5_000)
    await page.wait_for_timeout(200)  # the layout settles
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SHOTS / f"console-three-flags-{width}x{height}.png")
    pane = await page.locator("#conversation").bounding_box()
    transcript = await page.locator("#transcript").bounding_box()
    assert pane is not None and transcript is not None
    # The conversation keeps at least about 40% of the pane, its latest message in view.
    assert transcript["height"] >= 0.38 * pane["height"], (transcript, pane)
    last = await latest.bounding_box()
    assert last is not None
    bottom = transcript["y"] + transcript["height"]
    assert transcript["y"] <= last["y"] and last["y"] + last["height"] <= bottom + 1, (
        last, transcript)
    # The reply box is on the page; whatever of the cards and the flags does not fit says
    # that it scrolls, and scrolls to the last suggestion.
    draft = await page.locator("#draft").bounding_box()
    assert draft is not None and draft["y"] + draft["height"] <= height, draft
    for area in ("#coaching", "#flags"):
        box = page.locator(area)
        if await box.evaluate("el => el.scrollHeight > el.clientHeight + 1"):
            await expect(box).to_have_class(re.compile(r"\bmore-below\b"))
            await box.evaluate("el => { el.scrollTop = el.scrollHeight; }")
            await expect(box).not_to_have_class(re.compile(r"\bmore-below\b"))
    last_option = page.locator("#flags li").last.locator(".apply").last
    await last_option.scroll_into_view_if_needed()
    assert await wholly_in_view(last_option)
    await page.screenshot(path=SHOTS / f"console-three-flags-{width}x{height}-scrolled.png")



@pytest.mark.parametrize("width,height", [(1366, 768), (1280, 720)])
async def test_a_short_chat_gives_its_room_to_the_upset_card_and_the_flags_as_the_agent_types(
        site: Site, new_page: Any, agent_name: Any, out_dir: Path, width: int,
        height: int) -> None:
    # The conversation kept 40% of the pane, most of it empty, while the card was cut
    # above its scripts and the phrasing suggestions scrolled.
    name = await agent_name(["sr"])
    console = await new_page(width=width, height=height)
    await login(console, site, name)
    shop = await new_page()
    await open_shop(shop, site.base, lang="sr-Cyrl")
    await open_widget(shop)
    await write(shop, "Ово је ТРЕЋИ ПУТ да питам!!! И даље није решено")
    card = console.locator("#assist .card").filter(has_text="The customer is upset")
    script = card.locator(".insert").first
    await expect(script).to_be_visible(timeout=10_000)
    said = console.locator("#transcript .msg").first
    for line in (said, script):
        assert await wholly_in_view(line)
    await console.locator("#draft").press_sequentially("Не знам. То није мој посао. Смирите се.")
    flags = console.locator("#flags li")
    await expect(flags).to_have_count(3, timeout=10_000)
    await console.wait_for_timeout(200)  # the layout settles
    await console.screenshot(path=out_dir / f"console-upset-three-flags-{width}x{height}.png")
    suggestion = flags.first.locator(".apply").first
    for line in (said, script, suggestion):
        assert await wholly_in_view(line)
    # Nor under the foot that says there is more below, which lets clicks through.
    for option, area in ((script, "#coaching"), (suggestion, "#flags")):
        box, foot = await option.bounding_box(), await console.locator(area).evaluate(
            """el => { const r = el.getBoundingClientRect();
                return el.classList.contains('more-below')
                  ? r.bottom - parseFloat(getComputedStyle(el, '::after').height) : r.bottom; }""")
        assert box is not None and box["y"] + box["height"] <= foot, (area, box, foot)
    assert console.watched.errors == []

OVERLAPPING = [
    {"rule": "en.dont_know.i_dont_know", "category": "dont_know", "severity": "warning",
     "start": 0, "end": 31, "text": "I don't know, that's not my job",
     "message": "Say what you will do instead.", "suggestions": ["Let me find out for you"]},
    {"rule": "en.not_my_job.not_my_department", "category": "not_my_job", "severity": "warning",
     "start": 14, "end": 31, "text": "that's not my job", "message": "Own the request.",
     "suggestions": ["I'll get you to the right team, who can help you in more detail"]},
]


async def test_applying_a_suggestion_drops_every_other_flag_and_asks_again_at_once(
        site: Site, new_page: Any) -> None:
    page, fake = await scripted_console(site, new_page)
    await page.locator("#draft").fill(NOT_MY_JOB)
    await fake.answer_draft_with(NOT_MY_JOB, OVERLAPPING)
    await expect(page.locator("#flags li")).to_have_count(2, timeout=5_000)
    await page.get_by_role("button", name="Replace “that's not my job” with").click()
    fixed = "I don't know, I'll get you to the right team, who can help you in more detail."
    await expect(page.locator("#draft")).to_have_value(fixed)
    # The "don't know" flag was computed for the old text: it is gone, not left to splice
    # its suggestion over part of the new one.
    await expect(page.locator("#flags li")).to_have_count(0)
    await expect(page.locator("#backdrop mark")).to_have_count(0)
    # The new text goes to the coach at once, and its answer is shown.
    draft = await asyncio.wait_for(fake.drafts.get(), 10)
    while draft["text"] != fixed:
        draft = await asyncio.wait_for(fake.drafts.get(), 10)
    fresh = {**OVERLAPPING[0], "start": 0, "end": 12, "text": "I don't know"}
    fake.send(type="coach", conversation=fake.CONV, draft_id=draft["draft_id"], flags=[fresh])
    await expect(page.locator("#backdrop mark")).to_have_text(["I don't know"], timeout=5_000)
    await page.get_by_role("button", name="Replace “I don't know” with").click()
    await expect(page.locator("#draft")).to_have_value(
        "Let me find out for you, I'll get you to the right team, who can help you in more "
        "detail.")
    assert page.watched.errors == []


async def test_cards_come_most_urgent_first_and_introduce_yourself_goes_with_a_reply(
        site: Site, new_page: Any) -> None:
    page, fake = await scripted_console(site, new_page)
    await page.set_viewport_size({"width": 1366, "height": 768})
    fake.send(type="nudge", conversation=fake.CONV, category="missing_introduction",
              rule="en.conversation.missing_introduction", severity="info",
              message="Introduce yourself by name and ask for the customer's name.",
              suggestions=["My name is Jelena. May I have your name?"])
    await expect(page.locator("#assist .card")).to_have_count(1, timeout=5_000)
    for category in ("repeat_contact", "frustration", "escalation_request"):
        fake.send(type="script", conversation=fake.CONV, category=category,
                  cue={"seq": "1000-0", "start": 0, "end": 24, "text": "My parcel is late again!"},
                  message="Acknowledge it before the facts.",
                  scripts=["I'm sorry about the delay, Ana. I understand how frustrating "
                           "this is, and I'll look into it right now."])
    cards = page.locator("#assist .card")
    await expect(cards).to_have_count(4, timeout=5_000)
    order = await cards.evaluate_all("cs => cs.map(c => c.dataset.category)")
    assert order == ["frustration", "escalation_request", "repeat_contact",
                     "missing_introduction"], order
    await expect(cards.first).to_be_in_viewport()
    await page.locator("#draft").fill("Let me check that for you.")
    await page.locator("#draft").press("Enter")
    await expect(page.locator("#assist .card[data-category='missing_introduction']")
                 ).to_have_count(0)
    await expect(cards).to_have_count(3)


async def test_a_chat_closed_without_thanks_shows_the_lesson_on_the_closed_chat(
        site: Site, new_page: Any) -> None:
    page, fake = await scripted_console(site, new_page)
    await close_chat(page)
    assert fake.of_type("close")[-1]["conversation"] == fake.CONV
    fake.send(type="closed", conversation=fake.CONV, seq="3000-0",
              ts=int(time.time() * 1000), reason="closed",
              by={"role": "agent", "id": "jelena", "name": "Jelena"})
    await expect(page.locator("#draft")).to_be_disabled(timeout=5_000)
    fake.send(type="nudge", conversation=fake.CONV, category="missing_thanks",
              rule="en.conversation.missing_thanks", severity="info",
              message="The chat was closed without thanking the customer.",
              suggestions=["Thank you for contacting us, Ana. Have a great day!"])
    lesson = page.locator("#after-close")
    await expect(lesson).to_be_visible(timeout=5_000)
    await expect(lesson).to_contain_text("Next time: thank the customer before closing")
    await expect(lesson).to_contain_text("Thank you for contacting us, Ana.")
    await page.wait_for_timeout(500)
    await expect(lesson).to_be_visible()  # it stays, unlike the cards of an open chat


async def test_a_refused_request_for_card_data_offers_whole_sentences(
        site: Site, new_page: Any, agent_name: Any) -> None:
    name = await agent_name()
    console, shop = await chat_in_console(site, new_page, name, "I'd like to pay for order 1182.")
    asked = "Thanks! Please send me your card number and CVV."
    await console.locator("#draft").fill(asked)
    await console.locator("#draft").press("Enter")
    refusal = console.locator("#refusal")
    await expect(refusal).to_be_visible(timeout=10_000)
    suggested = refusal.locator(".use")
    first = ("Please use the secure payment link I'm sending you - never share card details, "
             "PINs or passwords in chat.")
    await expect(suggested.first).to_have_text(first)
    # What to do, as the buttons say it, not the server's "resend with override".
    await expect(refusal).not_to_contain_text("override")
    await expect(refusal.locator(".what-now")).to_contain_text("Send anyway sends it as it is")
    for label in await suggested.all_inner_texts():
        assert label[0].isupper() and not label.lower().startswith("use: "), label
    await suggested.first.click()
    await expect(console.locator("#draft")).to_have_value("Thanks! " + first)
    await console.locator("#draft").press("Enter")
    await wait_bubble(shop, "use the secure payment link", mine=False)
    assert "CVV." not in " ".join(await shop.locator(f"{W} .log .m .text").all_inner_texts())


async def wholly_in_view(locator: Any) -> bool:
    """Whether all of ``locator`` is on screen, no part of it scrolled away in its area or
    covered: what a user sees whole and clicks without scrolling."""
    return bool(await locator.evaluate("""el => {
        const r = el.getBoundingClientRect(), x = r.x + r.width / 2, y = r.y + r.height / 2;
        // The middle of each edge (its rounded corners are not hit).
        return [[x, r.top + 1], [x, r.bottom - 1], [r.left + 1, y], [r.right - 1, y]].every(
            ([px, py]) => py < innerHeight && px < innerWidth
                && el.contains(document.elementFromPoint(px, py)));
    }"""))


@pytest.mark.parametrize("width,height", [(1024, 700), (1440, 900)])
async def test_send_anyway_is_in_view_over_the_reply_box(
        site: Site, new_page: Any, agent_name: Any, out_dir: Path, width: int,
        height: int) -> None:
    name = await agent_name()
    console = await new_page(width=width, height=height)
    await login(console, site, name)
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    await write(shop, "This is ridiculous, I've called three times already about my parcel.")
    await console.locator("#chats .item").first.wait_for(timeout=10_000)
    await console.locator("#draft").fill(
        "Thanks for waiting, I can take the payment for order 1182 right now. Please send me "
        "your card number, the expiry date and the CVV on the back.")
    await console.locator("#draft").press("Enter")
    refusal = console.locator("#refusal")
    await expect(refusal).to_be_visible(timeout=10_000)
    await expect(refusal.locator(".use")).to_have_count(2)
    await console.screenshot(path=out_dir / f"console-refusal-{width}x{height}.png")
    anyway = refusal.get_by_role("button", name="Send anyway")
    for button in (anyway, refusal.get_by_role("button", name="Edit message")):
        assert await wholly_in_view(button)
    # In the area between the conversation and the reply box, above the reply box.
    box = await anyway.bounding_box()
    area = await console.locator("#coaching").bounding_box()
    draft = await console.locator("#draft").bounding_box()
    assert box is not None and area is not None and draft is not None
    assert area["y"] <= box["y"] and box["y"] + box["height"] <= draft["y"], (box, area, draft)
    await anyway.click()
    await wait_bubble(shop, "card number", mine=False)
    assert console.watched.errors == []



@pytest.mark.parametrize("earlier", [0, 12])
async def test_a_refusals_first_suggestion_is_in_view_above_its_buttons(
        site: Site, new_page: Any, out_dir: Path, earlier: int) -> None:
    # At 1024x700 the bar of Edit and Send anyway, which stays at the foot of the area,
    # covered the first suggestion; in a long chat too, whose conversation keeps 40%.
    page, fake = await scripted_console(site, new_page)
    await page.set_viewport_size({"width": 1024, "height": 700})
    now = int(time.time() * 1000)
    for i in range(1, earlier + 1):
        fake.send(**{"type": "message", "conversation": fake.CONV, "seq": f"{1000 + i}-0",
                     "ts": now - 60_000 + i * 1000, "id": f"m{i + 1}",
                     "from": {"role": "visitor", "id": "v_1", "name": "Ana"},
                     "text": f"I'd like to pay for order 1182, question {i}."})
    await expect(page.locator("#transcript .msg")).to_have_count(earlier + 1)
    asked = "Please send me your card number, the expiry date and the CVV on the back."
    text = "Thanks for waiting, I can take the payment for order 1182 right now. " + asked
    await page.locator("#draft").fill(text)
    await page.locator("#draft").press("Enter")
    await expect(page.locator("#transcript .msg.mine")).to_have_count(1)
    suggestions = ["please use the secure payment link I'm sending you - never share card "
                   "details, PINs or passwords in chat",
                   "I'll send you a secure form for that; for your safety, please don't type "
                   "card details here"]
    fake.send(type="error", code="sensitive_data", ref=fake.of_type("message")[-1]["id"],
              message="Resend with override to send it anyway.",
              flags=[{"rule": "en.sensitive.card", "category": "sensitive_data_request",
                      "severity": "alert", "start": len(text) - len(asked),
                      "end": len(text) - 1, "text": asked[:-1],
                      "message": "Never ask for a full card number or CVV in chat; send the "
                                 "customer a secure way to pay instead.",
                      "suggestions": suggestions}],
              suggestions=suggestions)
    refusal = page.locator("#refusal")
    await expect(refusal.locator(".use")).to_have_count(2, timeout=5_000)
    await page.wait_for_timeout(200)  # the layout settles
    await page.screenshot(path=out_dir / f"console-refusal-after-{earlier}-lines.png")
    for control in (refusal.locator(".use").first,
                    refusal.get_by_role("button", name="Edit message"),
                    refusal.get_by_role("button", name="Send anyway"),
                    page.locator("#transcript .msg").last, page.locator("#draft")):
        assert await wholly_in_view(control)
    assert page.watched.errors == []

async def test_a_refusal_in_a_cyrillic_chat_speaks_cyrillic(site: Site, new_page: Any,
                                                           agent_name: Any) -> None:
    name = await agent_name(["sr"])
    console = await new_page()
    await login(console, site, name)
    shop = await new_page()
    await open_shop(shop, site.base, lang="sr-Cyrl")
    await open_widget(shop)
    await write(shop, "Желим да платим поруџбину 1182.")
    await console.locator("#chats .item").first.wait_for(timeout=10_000)
    await console.locator("#draft").fill("Хвала! Пошаљите ми број картице.")
    await console.locator("#draft").press("Enter")
    refusal = console.locator("#refusal")
    await expect(refusal).to_be_visible(timeout=10_000)
    # What the coach says is in the chat's script; what the console says is its own English.
    why = refusal.locator(".why")
    await expect(why).to_have_attribute("lang", "sr")
    latin = re.compile("[A-Za-zčćžšđČĆŽŠĐ]")
    acronym = re.compile(r"\b(CVV|PIN)\b")  # written so in Cyrillic text too
    for text in [await why.inner_text(), *await refusal.locator(".use").all_inner_texts()]:
        assert text and not latin.search(acronym.sub("", text)), text
    await expect(refusal.locator("strong")).to_have_text(
        "Not sent: this asks for sensitive data in chat.")
    await expect(refusal.locator(".suggested-label")).to_have_text("Say it another way:")
    assert console.watched.errors == []


async def test_a_message_sent_anyway_says_so_as_the_review_does(site: Site, new_page: Any,
                                                               agent_name: Any) -> None:
    name = await agent_name()
    console, shop = await chat_in_console(site, new_page, name, "I'd like to pay for order 1182.")
    asked = "Please send me your card number and CVV."
    await console.locator("#draft").fill(asked)
    await console.locator("#draft").press("Enter")
    await console.locator("#refusal").get_by_role("button", name="Send anyway").click()
    await wait_bubble(shop, asked, mine=False)
    state = console.locator("#transcript .msg.mine .state")
    anyway = re.compile(r"^(read · )?sent anyway$")  # read, once the visitor has seen it
    await expect(state).to_have_text(anyway, timeout=10_000)
    # And so it stays once the coach has told how it recorded the message.
    deadline = time.monotonic() + 10
    while not any('"coach_checked"' in note for note in console.watched.trail):
        assert time.monotonic() < deadline, "no coach_checked frame"
        await asyncio.sleep(0.1)
    await expect(state).to_have_text(anyway)
    assert console.watched.errors == []


async def transcript_lines(console: Any) -> list[str]:
    """The conversation's messages and whispers in the order shown: a message as its text,
    a whisper as ``whisper: `` and its text."""
    return list(await console.evaluate("""() => [...document.querySelectorAll(
        '#transcript > li.msg, #transcript > li.whisper')].map(
        li => li.classList.contains('whisper') ? 'whisper: ' + li.lastChild.textContent
            : li.querySelector('.text').textContent)"""))


async def test_whispers_and_sent_anyway_stay_after_a_reload_and_a_reconnect(
        site: Site, new_page: Any, agent_name: Any) -> None:
    name = await agent_name()
    console = await new_page()
    cable = Cable()
    await cable.attach(console, site.ws + "/ws/agent")
    await login(console, site, name)
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    await write(shop, "I'd like to pay for order 1182.")
    await console.locator("#chats .item").first.wait_for(timeout=10_000)
    conv = await console.locator("#chats .item").first.get_attribute("data-conv")
    supervisor = await connect(site.ws, "/ws/agent", await site.login("supervisor"))
    await supervisor.send(type="whisper", id="w1", conversation=conv,
                          text="Offer the secure payment link.")
    await supervisor.expect("pong", ref="w1")
    whispers = console.locator("#transcript .whisper")
    await expect(whispers).to_have_count(1, timeout=10_000)
    asked = "Please send me your card number and CVV."
    await console.locator("#draft").fill(asked)
    await console.locator("#draft").press("Enter")
    await console.locator("#refusal").get_by_role("button", name="Send anyway").click()
    await wait_bubble(shop, asked, mine=False)
    await write(shop, "Is that safe?")
    await expect(console.locator("#transcript .msg .text").last).to_have_text(
        "Is that safe?", timeout=10_000)
    shown = ["I'd like to pay for order 1182.", "whisper: Offer the secure payment link.",
             asked, "Is that safe?"]
    assert await transcript_lines(console) == shown
    state = console.locator("#transcript .msg.mine .state")

    await console.reload()
    await expect(console.locator("#conn")).to_have_text("Connected", timeout=10_000)
    await expect(console.locator("#transcript .msg .text").last).to_have_text("Is that safe?")
    # The whisper where it was said, once; the message still says it was sent anyway.
    assert await transcript_lines(console) == shown
    await expect(state).to_have_text(re.compile(r"^(read · )?sent anyway$"))
    # A new whisper live, then a reconnect whose welcome lists both: each shown once.
    await supervisor.send(type="whisper", id="w2", conversation=conv, text="Well done.")
    await supervisor.expect("pong", ref="w2")
    await expect(whispers).to_have_count(2, timeout=10_000)
    await cable.cut()
    await expect(console.locator("#conn")).to_have_text("Reconnecting…")
    await expect(console.locator("#conn")).to_have_text("Connected", timeout=10_000)
    await console.wait_for_timeout(300)
    assert await transcript_lines(console) == shown + ["whisper: Well done."]
    await supervisor.close()
    assert console.watched.errors == []


async def test_a_flagged_message_says_read_beside_what_the_coach_made_of_it(
        site: Site, new_page: Any, agent_name: Any) -> None:
    name = await agent_name()
    console, shop = await chat_in_console(site, new_page, name, "Where is my order?")
    await console.locator("#draft").type(NOT_MY_JOB, delay=10)
    await expect(console.locator("#backdrop mark")).to_have_count(2, timeout=5_000)
    await console.locator("#draft").press("Enter")
    await wait_bubble(shop, NOT_MY_JOB, mine=False)
    # The visitor has it on screen (read) and the coach recorded it (ignored): both show,
    # whichever came first.
    state = console.locator("#transcript .msg.mine .state")
    await expect(state).to_have_text("read · coach: ignored", timeout=10_000)
    # And so it reads when the chat is shown again after another.
    other = await connect(site.ws, "/ws/visitor", await visitor_token(site.base, site="demo"))
    await other.say("Hello?")
    chats = console.locator("#chats .item")
    await expect(chats).to_have_count(2, timeout=10_000)
    await chats.nth(1).click()
    await expect(state).to_have_count(0)
    await chats.nth(0).click()
    await expect(state).to_have_text("read · coach: ignored")
    # And after a reload of the console, from what the server recorded.
    conv = await chats.nth(0).get_attribute("data-conv")
    await console.reload()
    await expect(console.locator("#conn")).to_have_text("Connected", timeout=10_000)
    await console.locator(f'#chats .item[data-conv="{conv}"]').click()
    await expect(state).to_have_text("read · coach: ignored", timeout=10_000)
    await other.close()
    assert console.watched.errors == []


async def test_console_works_without_a_coaching_server(site: Site, new_page: Any,
                                                       agent_name: Any) -> None:
    """Drafts that the server does not know must not stop messages from being sent."""
    name = await agent_name()
    console = await new_page()
    await login(console, site, name)
    agent = await site.agent_client(name, online=False)  # a second connection of the same agent
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    await write(shop, "hi")
    await console.locator("#chats .item").first.wait_for(timeout=10_000)
    await console.locator("#draft").type("Hello, how can I help?", delay=10)
    await console.wait_for_timeout(400)
    await console.locator("#draft").press("Enter")
    await wait_bubble(shop, "Hello, how can I help?", mine=False)
    await agent.close()


# ------------------------------------------------------------------ coaching, real server


async def test_real_coach_underlines_both_spans(site: Site, new_page: Any,
                                                agent_name: Any) -> None:
    name = await agent_name()
    console, shop = await chat_in_console(site, new_page, name, "Where is my order?")
    await console.locator("#draft").type(NOT_MY_JOB, delay=10)
    await expect(console.locator("#backdrop mark")).to_have_count(2, timeout=5_000)


async def test_real_server_shows_the_missing_thanks_after_closing(
        site: Site, new_page: Any, agent_name: Any) -> None:
    name = await agent_name()
    console, shop = await chat_in_console(site, new_page, name, "Where is my order?")
    await console.locator("#draft").fill("Your order left the warehouse today.")
    await console.locator("#draft").press("Enter")
    await wait_bubble(shop, "Your order left the warehouse today.", mine=False)
    await close_chat(console)
    lesson = console.locator("#after-close")
    await expect(lesson).to_contain_text("thank the customer before closing", timeout=10_000)
    await expect(console.locator("#draft")).to_be_disabled()


async def test_flag_badges_use_the_words_of_the_review_pages(site: Site, new_page: Any,
                                                             agent_name: Any) -> None:
    name = await agent_name()
    console, shop = await chat_in_console(site, new_page, name, "Where is my order?")
    await console.locator("#draft").type(NOT_MY_JOB, delay=10)
    badges = console.locator("#flags li .tag")
    await expect(badges).to_have_text(["don't know", "not my job"], timeout=5_000)
    assert await console.evaluate("TL.humanize('dont_know')") == "don't know"
    await console.locator("#draft").press("Home")  # the cursor in the first phrase
    await console.locator("#draft").press("ArrowRight")
    await expect(console.locator("#popover .tag")).to_have_text("don't know", timeout=5_000)


async def test_a_closed_chats_reply_box_looks_closed_and_says_so(
        site: Site, new_page: Any, agent_name: Any, out_dir: Path) -> None:
    name = await agent_name()
    console, shop = await chat_in_console(site, new_page, name, "That's all, thanks.")

    async def looks() -> dict[str, str]:
        return dict(await console.evaluate("""() => ({
            box: getComputedStyle(document.querySelector('.editor')).backgroundColor,
            send: getComputedStyle(document.querySelector('#composer button'))
                .backgroundColor})"""))

    open_look = await looks()
    note = console.locator("#closed-note")
    await expect(note).to_be_hidden()
    await close_chat(console)
    await expect(console.locator("#draft")).to_be_disabled(timeout=10_000)
    await expect(note).to_be_visible()
    await expect(note).to_contain_text("This chat is closed")
    await expect(console.locator("#draft")).to_have_attribute("aria-describedby", "closed-note")
    await expect(console.locator("#flags-help")).to_be_hidden()
    closed_look = await looks()
    assert closed_look["box"] != open_look["box"], (open_look, closed_look)
    assert closed_look["send"] != open_look["send"], (open_look, closed_look)
    # The line sits by the reply box it explains.
    said, box = await note.bounding_box(), await console.locator("#draft").bounding_box()
    assert said is not None and box is not None
    assert 0 <= box["y"] - (said["y"] + said["height"]) < 40
    await console.screenshot(path=out_dir / "console-closed-chat.png")


async def test_capacity_shows_the_servers_value_after_a_reload(site: Site, new_page: Any,
                                                              agent_name: Any) -> None:
    name = await agent_name()
    console = await new_page()
    await login(console, site, name)
    await console.locator("#capacity").fill("8")
    await console.locator("#capacity").dispatch_event("change")
    await asyncio.sleep(0.5)
    await console.reload()
    await expect(console.locator("#conn")).to_have_text("Connected", timeout=10_000)
    await expect(console.locator("#capacity")).to_have_value("8", timeout=10_000)
    # Offline too, where no queue snapshot lists the agent: going offline keeps it, and a
    # capacity set while offline is the one the console shows after a reload.
    await console.locator("#status").select_option("offline")
    await asyncio.sleep(0.5)
    await console.reload()
    await expect(console.locator("#conn")).to_have_text("Connected", timeout=10_000)
    await expect(console.locator("#capacity")).to_have_value("8", timeout=10_000)
    await console.locator("#capacity").fill("5")
    await console.locator("#capacity").dispatch_event("change")
    await asyncio.sleep(0.5)
    await console.reload()
    await expect(console.locator("#conn")).to_have_text("Connected", timeout=10_000)
    await expect(console.locator("#status")).to_have_value("offline")
    await expect(console.locator("#capacity")).to_have_value("5", timeout=10_000)


async def test_a_capacity_the_server_would_refuse_is_explained_by_the_field(
        site: Site, new_page: Any, agent_name: Any, out_dir: Path) -> None:
    # 0 and 50 stayed in the field, unsaved and unexplained; 2.5 gave the server's raw
    # "capacity: Input should be a valid integer, got a number with a fractional part".
    name = await agent_name()
    console = await new_page()
    sent = frames_sent(console)
    await login(console, site, name)
    field, error = console.locator("#capacity"), console.locator("#capacity-error")
    for attribute, value in (("min", "1"), ("max", "20"), ("step", "1")):
        await expect(field).to_have_attribute(attribute, value)
    await expect(console.locator("#capacity-limits")).to_have_text("1–20 chats")
    await expect(field).to_have_value("3")
    for bad in ("0", "50", "2.5", ""):
        await field.fill(bad)
        await field.press("Tab")
        await expect(error).to_have_text(
            "Not saved: capacity is a whole number of chats from 1 to 20 (it stays 3).")
        await expect(field).to_have_attribute("aria-invalid", "true")
        await expect(field).to_have_value(bad)  # there to correct, with the message
        await expect(field).to_have_accessible_description(re.compile("Not saved"))
    await console.screenshot(path=out_dir / "console-capacity-refused.png")
    await console.wait_for_timeout(300)
    await expect(console.locator("#toast")).to_be_empty()
    assert [f.get("capacity") for f in sent if f["type"] == "status"] == [3], sent
    # Corrected: the message goes as the agent types, and the value is saved.
    await field.fill("4")
    await expect(error).to_be_hidden()
    await field.press("Tab")
    await expect(field).to_have_attribute("aria-invalid", "false")
    async with httpx.AsyncClient(timeout=5) as http:
        deadline = time.monotonic() + 10
        while True:
            r = await http.get(site.base + "/api/agents",
                               headers={"Authorization": f"Bearer {await site.login(name)}"})
            mine = [a for a in r.json()["items"] if a["id"] == name]
            if mine and mine[0].get("capacity") == 4:
                break
            assert time.monotonic() < deadline, mine
            await asyncio.sleep(0.2)
    assert console.watched.errors == []


async def test_real_coach_applying_both_overlapping_suggestions_reads_well(
        site: Site, new_page: Any, agent_name: Any) -> None:
    name = await agent_name()
    console, shop = await chat_in_console(site, new_page, name, "Where is my order?")
    await console.locator("#draft").type(NOT_MY_JOB, delay=10)
    not_my_job = console.locator("#flags li[data-rule*='.not_my_job.']")
    await expect(not_my_job).to_have_count(1, timeout=5_000)
    await not_my_job.locator("button.apply").first.click()
    dont_know = console.locator("#flags li[data-rule*='.dont_know.']")
    await expect(dont_know).to_have_count(1, timeout=5_000)  # fresh, for the new text
    await dont_know.locator("button.apply").first.click()
    text = await console.locator("#draft").input_value()
    assert "you team," not in text and "right team" in text, text


async def test_the_cards_of_an_upset_customer_are_there_after_a_reload(
        site: Site, new_page: Any, agent_name: Any) -> None:
    name = await agent_name()
    console, shop = await chat_in_console(
        site, new_page, name, "I have called three times already, this is ridiculous!!!")
    cards = console.locator("#assist .card.script")
    await expect(cards).to_have_count(2, timeout=10_000)
    before = sorted(await cards.all_inner_texts())
    await console.reload()
    await expect(console.locator("#conn")).to_have_text("Connected", timeout=10_000)
    await console.locator("#chats .item").first.click()
    await expect(cards).to_have_count(2, timeout=10_000)
    assert sorted(await cards.all_inner_texts()) == before
    assert console.watched.errors == []


async def test_a_supervisor_who_takes_a_chat_over_reads_their_whisper_as_their_own(
        site: Site, new_page: Any, agent_name: Any) -> None:
    name = await agent_name()
    agent = await site.agent_client(name)
    shop = await new_page()
    await open_shop(shop, site.base)
    await open_widget(shop)
    await write(shop, "Where is my parcel?")
    conv = (await agent.expect("assignment", timeout=10))["conversation"]
    boss = await connect(site.ws, "/ws/agent", await site.login("supervisor"))
    await boss.send(type="whisper", id="w1", conversation=conv, text="Offer the refund.")
    await boss.expect("pong", ref="w1")
    console = await new_page()
    await login(console, site, "supervisor", online=False)
    await boss.send(type="take_over", conversation=conv)
    await console.locator("#chats .item").first.wait_for(timeout=10_000)
    await console.reload()  # the welcome lists the chat's whispers
    await expect(console.locator("#conn")).to_have_text("Connected", timeout=10_000)
    await console.locator("#chats .item").first.click()
    whisper = console.locator("#transcript .whisper")
    await expect(whisper).to_have_text("Your whisper to the agent: Offer the refund.",
                                       timeout=10_000)
    await boss.close()
    await agent.close()
