"""Helpers for driving the widget in a page; every wait has a timeout."""

from __future__ import annotations

from typing import Any

# Timeouts
UI_TIMEOUT_MS = 10_000

W = "#tactline-widget"  # Playwright CSS selectors pierce the open shadow root


async def open_shop(page: Any, base: str, lang: str | None = None) -> None:
    await page.goto(base + "/" + (f"?lang={lang}" if lang else ""))
    await page.locator(f"{W} .launcher").wait_for(timeout=UI_TIMEOUT_MS)
    await page.wait_for_function("window.Tactline && window.Tactline.version === 1",
                                 timeout=UI_TIMEOUT_MS)


async def open_widget(page: Any) -> None:
    await page.locator(f"{W} .launcher").click()
    await page.locator(f"{W} .panel").wait_for(state="visible", timeout=UI_TIMEOUT_MS)


async def write(page: Any, text: str) -> None:
    box = page.locator(f"{W} .compose textarea")
    await box.fill(text)
    await box.press("Enter")


def bubbles(page: Any, mine: bool | None = None) -> Any:
    sel = {None: ".m", True: ".m.me", False: ".m:not(.me)"}[mine]
    return page.locator(f"{W} .log {sel} .text")


async def wait_bubble(page: Any, text: str, mine: bool | None = None) -> None:
    await bubbles(page, mine).filter(has_text=text).first.wait_for(timeout=UI_TIMEOUT_MS)


class Cable:
    """A page's WebSocket to the real server, routed through the test: ``cut()`` drops
    the connection, and while ``down`` every new one is refused as a dead network
    would."""

    def __init__(self) -> None:
        self.sockets: list[Any] = []
        self.down = False

    async def attach(self, page: Any, url: str) -> None:
        await page.route_web_socket(url, self._through)

    async def _through(self, ws: Any) -> None:
        if self.down:
            await ws.close(code=1011)
            return
        ws.connect_to_server()
        self.sockets.append(ws)

    async def cut(self) -> None:
        await self.sockets[-1].close(code=1011)
