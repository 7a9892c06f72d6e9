"""Security: headers on every HTTP response, secrets kept out of logs, tokens bound to a site,
passwords stored as argon2id (docs/security.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from server.config import Site
from server.pages import PAGE_CSP
from server.security import DEFAULT_CSP
from tests.conftest import TEST_SECRET, ServeProcess
from tests.server.support import (
    PASSWORD,
    SITE_SECRET,
    agent,
    connect,
    make_account,
    running,
    visitor_token,
)

Serve = Callable[..., ServeProcess]

FRAGMENT = 12

# (method, path, the Content-Security-Policy it must carry)
RESPONSES = [
    ("GET", "/", PAGE_CSP),
    ("GET", "/agent", PAGE_CSP),
    ("GET", "/review", PAGE_CSP),
    ("GET", "/widget.js", DEFAULT_CSP),
    ("GET", "/static/agent.js", DEFAULT_CSP),
    ("GET", "/healthz", DEFAULT_CSP),
    ("GET", "/readyz", DEFAULT_CSP),
    ("GET", "/metrics", DEFAULT_CSP),
    ("GET", "/openapi.json", DEFAULT_CSP),
    ("GET", "/api/agents", DEFAULT_CSP),  # 401
    ("POST", "/api/login", DEFAULT_CSP),  # 400
    ("POST", "/api/visitors", DEFAULT_CSP),  # 200
    ("GET", "/no/such/page", DEFAULT_CSP),  # 404
]


async def test_every_http_response_carries_the_security_headers(redis_db: str) -> None:
    async with running(redis_db) as srv, httpx.AsyncClient(base_url=srv.base, timeout=5) as http:
        for method, path, csp in RESPONSES:
            body = {"site": "acme"} if path == "/api/visitors" else {}
            r = await http.request(method, path, json=body if method == "POST" else None)
            h = r.headers
            where = f"{method} {path} ({r.status_code})"
            assert h.get("content-security-policy") == csp, where
            assert "frame-ancestors 'none'" in h["content-security-policy"], where
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, where
            assert h.get("x-content-type-options") == "nosniff", where
            assert h.get("x-frame-options") == "DENY", where
            assert h.get("referrer-policy") in ("no-referrer", "same-origin"), where
            assert "camera=()" in h.get("permissions-policy", ""), where
            assert "strict-transport-security" not in h, where  # plain http: not sent
            if path.startswith("/api/"):
                assert h.get("cache-control") == "no-store", where


async def test_widget_stays_embeddable_by_any_site(redis_db: str) -> None:
    async with running(redis_db) as srv, httpx.AsyncClient(base_url=srv.base, timeout=5) as http:
        r = await http.get("/widget.js")
        assert r.status_code == 200
        assert r.headers["cross-origin-resource-policy"] == "cross-origin"
        assert r.headers["content-type"].startswith("text/javascript")


async def test_hsts_only_over_https(redis_db: str) -> None:
    async with running(redis_db) as srv, httpx.AsyncClient(base_url=srv.base, timeout=5) as http:
        # Behind a TLS-terminating proxy on loopback (uvicorn trusts 127.0.0.1 by default).
        r = await http.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert r.headers["strict-transport-security"].startswith("max-age=31536000")


async def test_websocket_handshake_is_not_touched_by_the_headers(redis_db: str) -> None:
    async with running(redis_db) as srv:
        vi = await connect(srv.ws, "/ws/visitor", await visitor_token(srv.base))
        assert vi.welcome["type"] == "welcome"
        await vi.close()


async def test_token_of_one_site_is_refused_on_another_sites_page(redis_db: str) -> None:
    sites = {
        "acme": Site(origins=["https://acme.example"], secret=SITE_SECRET),
        "other": Site(origins=["https://other.example"]),
    }
    async with running(redis_db, sites=sites) as srv:
        token = await visitor_token(srv.base, site="acme")
        # The handshake passes (another site allows the origin); the token does not.
        vi = await connect(srv.ws, "/ws/visitor", token, origin="https://other.example")
        assert (vi.welcome["type"], vi.welcome["code"]) == ("error", "token_invalid")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await vi.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


async def test_passwords_are_stored_as_argon2id_only(redis_db: str) -> None:
    await make_account(redis_db, "jelena")
    r = Redis.from_url(redis_db, decode_responses=True)
    try:
        stored = await r.hgetall("{tl}:user:jelena")
        dump = json.dumps(await r.hgetall("{tl}:user:jelena"))
    finally:
        await r.aclose()
    assert stored["hash"].startswith("$argon2id$")
    assert PASSWORD not in dump


@pytest.mark.slow
@pytest.mark.parametrize("level", ["debug", "info"])
async def test_tokens_and_passwords_never_reach_the_log(
    redis_db: str, serve_process: Serve, level: str
) -> None:
    srv = serve_process(redis_db, log_level=level)
    wrong_password = "wrong-password-" + level
    async with httpx.AsyncClient(base_url=srv.base, timeout=5) as http:
        await make_account(redis_db, "jelena")
        r = await http.post("/api/login", json={"username": "jelena", "password": wrong_password})
        assert r.status_code == 401
        session = (
            await http.post("/api/login", json={"username": "jelena", "password": PASSWORD})
        ).json()["token"]
        from server.tokens import user_hash

        verified_hash = user_hash(SITE_SECRET, "42")
        r = await http.post(
            "/api/visitors", json={"site": "acme", "user_id": "42", "user_hash": verified_hash}
        )
        vtoken = r.json()["token"]
        r = await http.get("/api/agents", headers={"Authorization": f"Bearer {session}x"})
        assert r.status_code == 401
    ag = await agent(srv, redis_db, "jelena", create=False)
    vi = await connect(srv.ws, "/ws/visitor", vtoken)
    ack = await vi.say("hello")
    await ag.expect("assignment", conversation=ack["conversation"])
    # Tokens where they do not belong: in a bad frame, and a hello with a tampered one.
    await vi.send_raw('{"v":1,"type":"message","token":"' + vtoken + '"')
    await vi.expect("error")
    bad = await connect(srv.ws, "/ws/agent", session[:-2] + "AA")
    assert bad.welcome["code"] == "token_invalid"
    for c in (vi, ag):
        await c.close()
    srv.stop()
    log = Path(srv.log.name).read_text(errors="replace")
    assert log.strip(), "the server logged nothing; the check would prove nothing"
    secrets_ = {
        "session token": session,
        "session token signature": session.split(".")[1],
        "visitor token": vtoken,
        "visitor token signature": vtoken.split(".")[1],
        "password": PASSWORD,
        "wrong password": wrong_password,
        "server secret": TEST_SECRET,
        "site secret": SITE_SECRET,
        "user_hash": verified_hash,
    }
    # A log line that truncates a token ("eyJ…dkk") still gives away part of it: look for
    # any 12 characters in a row of each secret.
    # (A token's first part is its claims in base64, alike for every token: not a secret.)
    leaked = [
        name
        for name, value in secrets_.items()
        if value in log
        or (
            "." not in value
            and any(value[i : i + FRAGMENT] in log for i in range(len(value) - FRAGMENT + 1))
        )
    ]
    assert not leaked, f"{leaked} in the {level} log:\n{log[-2000:]}"


async def test_logging_out_ends_that_session_and_no_other(redis_db: str) -> None:
    async with running(redis_db) as srv, httpx.AsyncClient(base_url=srv.base, timeout=5) as http:
        await make_account(redis_db, "jelena")
        login = {"username": "jelena", "password": PASSWORD}
        here, elsewhere = [
            (await http.post("/api/login", json=login)).json()["token"] for _ in range(2)
        ]

        def bearer(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        assert (await http.get("/api/agents", headers=bearer(here))).status_code == 200
        r = await http.post("/api/logout", headers=bearer(here))
        assert r.status_code == 200 and r.json() == {"ok": True}
        # The token is refused from now on, by REST and by the WebSocket endpoint ...
        r = await http.get("/api/agents", headers=bearer(here))
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        assert "session has ended" in r.json()["message"]
        refused = await connect(srv.ws, "/ws/agent", here)
        assert refused.welcome["code"] == "token_invalid"
        # ... while the same person's session on another computer goes on.
        assert (await http.get("/api/agents", headers=bearer(elsewhere))).status_code == 200
        ws = await connect(srv.ws, "/ws/agent", elsewhere)
        assert ws.welcome["type"] == "welcome"
        await ws.close()
        # Logging out needs a session, and says so.
        r = await http.post("/api/logout")
        assert r.status_code == 401 and "Bearer" in r.json()["message"]
