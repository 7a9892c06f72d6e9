"""Browser pages and assets from widget/: the demo shop, /widget.js, /agent, /review.

Files are read once per change of their modification time and kept with a gzip copy
and an ETag; a matching ``If-None-Match`` gets 304. Only files named in ``ASSETS`` are
served, so no request path reaches the file system.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

WIDGET_DIR = Path(__file__).resolve().parent.parent / "widget"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# The console, review and demo pages load only their own scripts and styles and talk
# only to this server (WebSocket included: 'self' covers ws:// and wss:// of the origin).
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

# Caching: the widget is loaded by every page of every site, so browsers keep it for
# five minutes and then revalidate with the ETag; pages are always revalidated.
WIDGET_MAX_AGE_S = 300
ASSET_MAX_AGE_S = 300

# Limits
MIN_GZIP_BYTES = 512

WIDGET_LANGS = ("en", "sr-Latn", "sr-Cyrl", "hr", "sl")

# URL path -> file in widget/
ASSETS = {
    "/widget.js": "widget.js",
    "/static/common.js": "common.js",
    "/static/console.css": "console.css",
    "/static/agent.js": "agent.js",
    "/static/review.js": "review.js",
    "/static/charts.js": "charts.js",
    "/static/demo.css": "demo.css",
    "/static/demo.js": "demo.js",
}
PAGES = {
    "/": "demo.html",
    "/agent": "agent.html",
    "/review": "review.html",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    etag: str
    mtime_ns: int


_cache: dict[str, Asset] = {}


def load(name: str) -> Asset:
    """The file ``widget/<name>`` with its gzip copy and ETag, re-read when it changes."""
    path = WIDGET_DIR / name
    mtime = path.stat().st_mtime_ns
    cached = _cache.get(name)
    if cached and cached.mtime_ns == mtime:
        return cached
    body = path.read_bytes()
    gz = gzip.compress(body, 9, mtime=0) if len(body) >= MIN_GZIP_BYTES else None
    asset = Asset(body, gz, '"' + hashlib.sha256(body).hexdigest()[:20] + '"', mtime)
    _cache[name] = asset
    return asset


def widget_gzip_size() -> int:
    """Bytes of widget.js as sent to a browser that accepts gzip."""
    asset = load("widget.js")
    return len(asset.gzipped or asset.body)


def _respond(request: Request, name: str, cache_control: str, csp: str | None) -> Response:
    try:
        asset = load(name)
    except FileNotFoundError:
        return Response("not found\n", status_code=404, media_type="text/plain")
    headers = {
        "Cache-Control": cache_control,
        "ETag": asset.etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    if csp:
        headers["Content-Security-Policy"] = csp
    media_type = CONTENT_TYPES[Path(name).suffix]
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = asset.body
    accepts = request.headers.get("accept-encoding", "")
    if asset.gzipped is not None and "gzip" in accepts:
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(status_code=200, headers=headers, media_type=media_type)
    return Response(body, headers=headers, media_type=media_type)


async def page(request: Request) -> Response:
    return _respond(request, PAGES[request.url.path], "no-cache", PAGE_CSP)


async def demo(request: Request) -> Response:
    """The demo shop; ``?lang=`` (one of ``WIDGET_LANGS``) sets the widget's data-lang."""
    lang = request.query_params.get("lang", "en")
    if lang not in WIDGET_LANGS or lang == "en":
        return _respond(request, PAGES["/"], "no-cache", PAGE_CSP)
    html = (
        load(PAGES["/"])
        .body.decode()
        .replace('data-lang="en"', f'data-lang="{lang}"', 1)
        .replace('<html lang="en">', f'<html lang="{lang}">', 1)
    )
    return Response(
        html,
        media_type=CONTENT_TYPES[".html"],
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": PAGE_CSP,
            "X-Content-Type-Options": "nosniff",
        },
    )


async def asset(request: Request) -> Response:
    path = request.url.path
    if path == "/widget.js":
        # Any site may embed the widget; it needs no page CSP of its own.
        response = _respond(
            request, ASSETS[path], f"public, max-age={WIDGET_MAX_AGE_S}, must-revalidate", None
        )
        response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
        return response
    return _respond(request, ASSETS[path], f"public, max-age={ASSET_MAX_AGE_S}", None)


routes = (
    [Route("/", demo, methods=["GET", "HEAD"])]
    + [Route(p, page, methods=["GET", "HEAD"]) for p in PAGES if p != "/"]
    + [Route(p, asset, methods=["GET", "HEAD"]) for p in ASSETS]
)
