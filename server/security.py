"""Security headers on every HTTP response (docs/security.md).

A pure ASGI middleware: WebSocket handshakes pass through untouched, and a
header the route set itself wins (the pages' own Content-Security-Policy in
server/pages.py, ``Cross-Origin-Resource-Policy: cross-origin`` on
/widget.js). Everything else gets a strict default: the JSON API and the
health endpoints are data, never documents, so their policy forbids every
kind of content and framing.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# For responses that set no policy of their own: the API, health, metrics, errors.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Content-Security-Policy": DEFAULT_CSP,
}
# Tokens and transcripts must not stay in shared or browser caches.
API_HEADERS = {"Cache-Control": "no-store"}
HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeaders:
    """Add the headers of docs/security.md to HTTP responses that do not set them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_api = str(scope.get("path", "")).startswith("/api/")
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON_HEADERS.items():
                    headers.setdefault(name, value)
                if is_api:
                    for name, value in API_HEADERS.items():
                        headers.setdefault(name, value)
                if https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
