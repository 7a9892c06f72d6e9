"""The whole story of issue 5 in one browser session: visitor, agent and supervisor, with a
server restart in the middle. The server here is this module's own, so restarting it does
not disturb the other browser tests."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.server.support import make_account
from tests.widget.conftest import WIDGET_DB, Site, failed, require_chromium, start_site
from tests.widget.support import W, bubbles, open_shop, open_widget, wait_bubble, write
from tests.widget.test_console import NOT_MY_JOB, login

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(150)]

XSS = "<img src=x onerror=alert(1)>"

# Timeouts
DELIVERY_TIMEOUT_MS = 45_000  # reconnect backoff after a restart included
OUTAGE_MS = 20_000  # long enough for the widget's backoff to reach its cap
BACKOFF_CAP_S = 4  # the widget's and the console's longest wait between attempts
BACK_WITHIN_MS = 6_000  # the cap, the connection and the welcome


@pytest.fixture(scope="module")
def own_site(redis_url: str) -> Iterator[Site]:
    require_chromium()
    server = start_site(redis_url, WIDGET_DB + 1, TACTLINE_GRACE_PERIOD_S="60",
                        TACTLINE_LOG_LEVEL="info")
    yield server
    server.cleanup()


@pytest.fixture(autouse=True)
def server_log_on_failure(own_site: Site, request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if failed(request):
        print("--- server log (last 150 lines)")
        print("\n".join(own_site.output().splitlines()[-150:]))


@pytest.fixture
async def own_agent(own_site: Site) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    made: list[str] = []

    async def make() -> str:
        name = f"e2e{len(made) + 1}x{id(made) % 10_000}"
        await make_account(own_site.redis_url, name, languages=["en", "sr"])
        own_site.accounts[name] = "correct horse battery"
        made.append(name)
        return name

    yield make
    if own_site.proc is not None:
        await own_site.close_everything(made)


async def transcript(site: Site, conv: str) -> list[str]:
    token = await site.login("supervisor")
    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.get(f"{site.base}/api/conversations/{conv}",
                           headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
        return [e["text"] for e in r.json()["events"] if e["type"] == "message"]


async def test_restart_while_the_widget_is_open_delivers_each_message_once(
        own_site: Site, new_page: Any, own_agent: Any, out_dir: Path) -> None:
    name = await own_agent()
    console = await new_page()
    await login(console, own_site, name)
    shop = await new_page()
    await open_shop(shop, own_site.base)
    await open_widget(shop)
    await write(shop, "before restart")
    chat = console.locator("#chats .item").first
    await chat.wait_for(timeout=10_000)
    conv = await chat.get_attribute("data-conv")
    await console.locator("#draft").fill("answer before restart")
    await console.locator("#draft").press("Enter")
    await wait_bubble(shop, "answer before restart", mine=False)

    await asyncio.to_thread(own_site.stop)
    await expect(shop.locator(f"{W} .notice")).to_have_text("Reconnecting…", timeout=10_000)
    await write(shop, "while down 1")
    await write(shop, "while down 2")
    await console.locator("#draft").fill("agent while down")
    await console.locator("#draft").press("Enter")
    await shop.screenshot(path=out_dir / "widget-reconnecting.png")
    await asyncio.to_thread(own_site.start)
    await write(shop, "after restart")

    expected = Counter(["before restart", "answer before restart", "while down 1", "while down 2",
                        "agent while down", "after restart"])
    await expect(bubbles(shop)).to_have_count(6, timeout=DELIVERY_TIMEOUT_MS)
    ticks = shop.locator(f"{W} .m.me .tick")
    for i in range(4):
        await expect(ticks.nth(i)).not_to_have_text("…", timeout=DELIVERY_TIMEOUT_MS)
    await expect(console.locator("#transcript .msg:not(.pending) .text")).to_have_count(
        6, timeout=DELIVERY_TIMEOUT_MS)
    await shop.wait_for_timeout(1000)  # a duplicate would arrive by now
    assert Counter(await bubbles(shop).all_inner_texts()) == expected
    assert Counter(await console.locator("#transcript .msg .text").all_inner_texts()) == expected
    assert conv is not None
    assert Counter(await transcript(own_site, conv)) == expected
    assert shop.watched.errors == [] and console.watched.errors == []


async def test_after_a_long_outage_the_widget_is_back_within_seconds(
        own_site: Site, new_page: Any, own_agent: Any, out_dir: Path) -> None:
    # The agent's console too: it waits at most as long between attempts.
    console = await new_page()
    await login(console, own_site, await own_agent())
    conn = console.locator("#conn")
    await expect(conn).to_have_text("Connected", timeout=10_000)
    console_attempts: list[float] = []
    console.on("websocket", lambda _: console_attempts.append(time.monotonic()))
    shop = await new_page(width=390, height=844)
    attempts: list[float] = []
    shop.on("websocket", lambda _: attempts.append(time.monotonic()))
    await open_shop(shop, own_site.base)
    await open_widget(shop)
    # Welcomed: the message box, or the form if no agent is online.
    await shop.locator(f"{W} form.compose:not([hidden]), {W} form.leave:not([hidden])").wait_for(
        timeout=10_000)
    notice = shop.locator(f"{W} .notice")
    await asyncio.to_thread(own_site.stop)
    await expect(notice).to_have_text("Reconnecting…", timeout=10_000)
    down = time.monotonic()
    await shop.wait_for_timeout(OUTAGE_MS)  # every attempt fails meanwhile
    await shop.screenshot(path=out_dir / "widget-reconnecting-390.png")
    late = [t for t in attempts if t > down] + [time.monotonic()]
    gaps = [b - a for a, b in zip(late, late[1:], strict=False)]
    print(f"\nattempts while down: {len(late) - 1}, longest gap {max(gaps):.1f} s")
    # Never long between two attempts, so never long after the server is back.
    assert max(gaps) <= BACKOFF_CAP_S + 1, gaps
    late = [t for t in console_attempts if t > down] + [time.monotonic()]
    console_gaps = [b - a for a, b in zip(late, late[1:], strict=False)]
    assert len(late) > 2 and max(console_gaps) <= BACKOFF_CAP_S + 1, console_gaps
    await expect(conn).to_have_text("Reconnecting…")
    await asyncio.to_thread(own_site.start)
    await expect(notice).to_have_text("", timeout=BACK_WITHIN_MS)
    await expect(conn).to_have_text("Connected", timeout=BACK_WITHIN_MS)
    assert shop.watched.errors == [] and console.watched.errors == []


async def test_the_whole_story_with_coaching(own_site: Site, new_page: Any, own_agent: Any,
                                             out_dir: Path) -> None:
    name = await own_agent()
    console = await new_page()
    await login(console, own_site, name)

    # The visitor opens the widget on the demo shop and writes; the agent gets the chat.
    shop = await new_page()
    await open_shop(shop, own_site.base)
    await open_widget(shop)
    await write(shop, "Hello, my order 1182 has not arrived. " + XSS)
    chat = console.locator("#chats .item").first
    await chat.wait_for(timeout=10_000)
    conv = await chat.get_attribute("data-conv")
    await expect(console.locator("#transcript .msg .text")).to_have_text(
        ["Hello, my order 1182 has not arrived. " + XSS])

    # Both spans are underlined with suggestions; the agent applies one and sends.
    await console.locator("#draft").type(NOT_MY_JOB, delay=15)
    await expect(console.locator("#backdrop mark")).to_have_count(2, timeout=5_000)
    await expect(console.locator("#flags li")).to_have_count(2)
    await console.screenshot(path=out_dir / "e2e-console-flags.png")
    await console.locator("#flags li").first.locator("button.apply").first.click()
    corrected = await console.locator("#draft").input_value()
    assert corrected != NOT_MY_JOB
    await console.locator("#draft").press("Enter")
    await wait_bubble(shop, corrected, mine=False)
    assert corrected in await bubbles(shop, mine=False).all_inner_texts()

    # An upset visitor: an acknowledgement script appears and inserts with one click.
    await write(shop, "This is a disgrace, I have already called three times!")
    script = console.locator("#assist .card.script").first
    await expect(script).to_be_visible(timeout=10_000)
    await script.locator("button.insert").first.click()
    assert await console.locator("#draft").input_value() != ""

    # The supervisor finds the flagged transcript and marks a false alarm.
    review = await new_page()
    await review.goto(own_site.base + "/review#/conversations?has_flags=true")
    await review.get_by_label("User name").fill("supervisor")
    await review.get_by_label("Password").fill(own_site.accounts["supervisor"])
    await review.get_by_role("button", name="Log in").click()
    await review.locator(f"tr[data-conv='{conv}']").click(timeout=10_000)
    await expect(review.locator(".transcript .msg .text").first).to_have_text(
        "Hello, my order 1182 has not arrived. " + XSS)
    flag = review.locator(".flag-list li").first
    await flag.get_by_role("button", name="False alarm").click()
    await expect(flag.locator(".review-status")).to_have_text("Review: false alarm")
    for page in (shop, console, review):
        assert page.watched.dialogs == []
        assert await page.locator("img").count() == 0
