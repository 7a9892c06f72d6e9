"""HTTP API: visitor tokens, login, REST with role checks, OpenAPI, metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from server.api import Presence, presence
from server.tokens import user_hash
from tests.server.support import (
    PASSWORD,
    SITE_SECRET,
    agent,
    connect,
    make_account,
    running,
    session_token,
    visitor,
    visitor_token,
)


async def test_visitor_token_for_unknown_site_or_foreign_origin_is_refused(redis_db: str) -> None:
    async with running(redis_db) as srv, httpx.AsyncClient(base_url=srv.base, timeout=5) as http:
        r = await http.post("/api/visitors", json={"site": "nope"})
        assert (r.status_code, r.json()["code"]) == (404, "unknown_site")
        r = await http.post(
            "/api/visitors", json={"site": "acme"}, headers={"Origin": "https://evil.example"}
        )
        assert (r.status_code, r.json()["code"]) == (403, "origin_forbidden")
        r = await http.post("/api/visitors", json={"site": "acme", "lang": "xx"})
        assert (r.status_code, r.json()["code"]) == (400, "invalid_request")
        r = await http.post(
            "/api/visitors", json={"site": "acme"}, headers={"Origin": "https://acme.example"}
        )
        assert r.status_code == 200 and r.json()["visitor_id"].startswith("v_")


async def test_verified_visitor_sees_history_on_another_device(redis_db: str) -> None:
    async with running(redis_db) as srv:
        proof = {"user_id": "42", "user_hash": user_hash(SITE_SECRET, "42")}
        phone = await visitor(srv, **proof)
        conv = (await phone.say("from my phone"))["conversation"]
        laptop = await visitor(srv, **proof)
        [view] = laptop.welcome["conversations"]
        assert view["conversation"] == conv
        assert [e["text"] for e in view["events"] if e["type"] == "message"] == ["from my phone"]
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.post(
                srv.base + "/api/visitors",
                json={"site": "acme", "user_id": "42", "user_hash": "0" * 64},
            )
        assert (r.status_code, r.json()["code"]) == (403, "identity_invalid")
        for c in (phone, laptop):
            await c.close()


async def test_the_name_and_email_a_page_gives_reach_the_agent(redis_db: str) -> None:
    async with running(redis_db) as srv:
        jelena = await agent(srv, redis_db, "jelena")
        await make_account(redis_db, "boss", role="supervisor")
        ana = await visitor(srv, name="Ana Kovač", email="ana@example.com")
        conv = (await ana.say("Where is order 1182?"))["conversation"]
        assigned = await jelena.expect("assignment", conversation=conv)
        assert assigned["visitor"]["name"] == "Ana Kovač"
        assert assigned["visitor"]["email"] == "ana@example.com"
        boss = {"Authorization": "Bearer " + await session_token(srv.base, "boss")}
        async with httpx.AsyncClient(base_url=srv.base, timeout=5) as http:
            listed = (await http.get("/api/conversations", headers=boss)).json()["items"]
            assert [c["visitor"]["email"] for c in listed if c["conversation"] == conv] == [
                "ana@example.com"
            ]
            r = await http.post("/api/visitors", json={"site": "acme", "email": "not an email"})
            assert (r.status_code, r.json()["code"]) == (400, "invalid_request")
            assert r.json()["message"].startswith("email:")
            spoof = {"site": "acme", "email": "ana@exa\u202emple.com"}
            r = await http.post("/api/visitors", json=spoof)
            assert (r.status_code, r.json()["code"]) == (400, "invalid_request")
        # A direction override in a name is dropped: the agent reads what was typed.
        mira = await visitor(srv, name="Mira\u202e Ivić")
        third = (await mira.say("Hi"))["conversation"]
        assert (await jelena.expect("assignment", conversation=third))["visitor"]["name"] == (
            "Mira Ivić"
        )
        await mira.close()
        # A visitor who gave none has a null email, not an empty one.
        anon = await visitor(srv)
        other = (await anon.say("Hello"))["conversation"]
        assert (await jelena.expect("assignment", conversation=other))["visitor"]["email"] is None
        for c in (ana, anon, jelena):
            await c.close()


async def test_previous_token_keeps_the_visitor_id(redis_db: str) -> None:
    async with running(redis_db) as srv, httpx.AsyncClient(base_url=srv.base, timeout=5) as http:
        first = (await http.post("/api/visitors", json={"site": "acme"})).json()
        again = (
            await http.post("/api/visitors", json={"site": "acme", "token": first["token"]})
        ).json()
        assert again["visitor_id"] == first["visitor_id"]


async def test_server_issued_visitor_token_expires(redis_db: str) -> None:
    async with running(redis_db, visitor_token_ttl_s=1) as srv:
        token = await visitor_token(srv.base)
        await asyncio.sleep(2.1)
        vi = await connect(srv.ws, "/ws/visitor", token)
        assert vi.welcome["code"] == "token_expired"


async def test_login_wrong_password_and_rate_limit(redis_db: str) -> None:
    async with (
        running(redis_db, login_attempts_per_min=3) as srv,
        httpx.AsyncClient(base_url=srv.base, timeout=5) as http,
    ):
        await make_account(redis_db, "jelena")
        r = await http.post("/api/login", json={"username": "jelena", "password": "wrong!!!"})
        assert (r.status_code, r.json()["code"]) == (401, "login_failed")
        r = await http.post("/api/login", json={"username": "nobody", "password": "wrong!!!"})
        assert r.status_code == 401
        r = await http.post("/api/login", json={"username": "jelena", "password": PASSWORD})
        assert r.status_code == 200 and r.json()["role"] == "agent"
        # The window is a calendar minute: a few more tries are over the limit even if it rolls.
        refused = []
        for _ in range(4):
            r = await http.post("/api/login", json={"username": "jelena", "password": PASSWORD})
            refused.append(r.json().get("code"))
        assert "rate_limited" in refused


async def test_rest_role_checks_and_paging(redis_db: str) -> None:
    async with running(redis_db) as srv:
        jelena = await agent(srv, redis_db, "jelena", capacity=5)
        await make_account(redis_db, "marko")
        await make_account(redis_db, "boss", role="supervisor")
        convs = []
        visitors = []
        for i in range(3):
            v = await visitor(srv)
            visitors.append(v)
            convs.append((await v.say(f"question {i}"))["conversation"])
            await jelena.expect("assignment", conversation=convs[-1])
        headers = {
            name: {"Authorization": "Bearer " + await session_token(srv.base, name)}
            for name in ("jelena", "marko", "boss")
        }
        async with httpx.AsyncClient(base_url=srv.base, timeout=5) as http:
            r = await http.get("/api/conversations")
            assert r.status_code == 401
            mine = (await http.get("/api/conversations", headers=headers["jelena"])).json()
            assert {c["conversation"] for c in mine["items"]} == set(convs)
            none = (await http.get("/api/conversations", headers=headers["marko"])).json()
            assert none["items"] == []
            r = await http.get(f"/api/conversations/{convs[0]}", headers=headers["marko"])
            assert (r.status_code, r.json()["code"]) == (403, "forbidden")
            r = await http.get(f"/api/conversations/{convs[0]}", headers=headers["jelena"])
            events = r.json()["events"]
            assert [e["text"] for e in events if e["type"] == "message"] == ["question 0"]
            page1 = (await http.get("/api/conversations?limit=2", headers=headers["boss"])).json()
            assert len(page1["items"]) == 2 and page1["next_cursor"]
            page2 = (
                await http.get(
                    f"/api/conversations?limit=2&cursor={page1['next_cursor']}",
                    headers=headers["boss"],
                )
            ).json()
            seen = [c["conversation"] for c in page1["items"] + page2["items"]]
            assert sorted(seen) == sorted(convs) and page2["next_cursor"] is None
            closed = (
                await http.get("/api/conversations?status=closed", headers=headers["boss"])
            ).json()
            assert closed["items"] == []
            r = await http.get("/api/conversations?agent=jelena", headers=headers["marko"])
            assert r.status_code == 403
            agents = (await http.get("/api/agents", headers=headers["boss"])).json()["items"]
            by_id = {a["id"]: a for a in agents}
            assert by_id["jelena"]["status"] == "online" and by_id["jelena"]["open"] == 3
            assert by_id["marko"]["status"] == "offline"
            r = await http.get("/api/conversations/c_0000000000000000", headers=headers["boss"])
            assert r.status_code == 404
        for c in (jelena, *visitors):
            await c.close()


async def test_agents_list_says_which_teams_each_account_is_in(redis_db: str) -> None:
    async with running(redis_db) as srv:
        await make_account(redis_db, "jelena", teams=["support", "billing"])
        await make_account(redis_db, "marko")
        headers = {"Authorization": f"Bearer {await session_token(srv.base, 'marko')}"}
        async with httpx.AsyncClient(base_url=srv.base, headers=headers, timeout=5) as http:
            items = (await http.get("/api/agents")).json()["items"]
        teams = {a["id"]: a["teams"] for a in items}
        assert teams == {"jelena": ["support", "billing"], "marko": ["support"]}


async def test_openapi_describes_every_route(redis_db: str) -> None:
    async with running(redis_db) as srv, httpx.AsyncClient(base_url=srv.base, timeout=5) as http:
        doc = (await http.get("/openapi.json")).json()
        assert doc["openapi"].startswith("3.")
        api_routes = {r.path for r in srv.app.routes if getattr(r, "path", "").startswith("/api/")}
        assert set(doc["paths"]) == api_routes
        for path in doc["paths"].values():
            for op in path.values():
                for resp in op["responses"].values():
                    for content in resp["content"].values():
                        ref = content["schema"].get("$ref")
                        if ref is not None:
                            assert ref.split("/")[-1] in doc["components"]["schemas"]


async def test_health_and_metrics(redis_db: str) -> None:
    async with running(redis_db) as srv:
        vi = await visitor(srv)
        await vi.say("count me")
        await vi.send(type="bogus")
        await vi.expect("error")
        async with httpx.AsyncClient(base_url=srv.base, timeout=5) as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and "rules not loaded" in ready.text
            assert "redis unreachable" not in ready.text
            text = (await http.get("/metrics")).text
        assert 'tactline_connections{role="visitor"} 1' in text
        assert "tactline_messages_total 1" in text
        assert 'tactline_errors_total{code="unknown_type"} 1' in text
        assert "tactline_queue_length 1" in text
        assert "tactline_delivery_latency_seconds_count" in text
        await vi.close()


@pytest.mark.parametrize("name", ["Bad Name", "x" * 40])
async def test_account_names_are_validated(redis_db: str, name: str) -> None:
    from server.accounts import AccountError

    with pytest.raises(AccountError):
        await make_account(redis_db, name)


@pytest.mark.parametrize(
    ("chosen", "connected", "grace_ends", "seen"),
    [
        ("online", True, None, Presence("online")),
        ("away", True, None, Presence("away")),
        ("online", True, 5_000, Presence("online")),  # back before the sweep noticed
        ("offline", False, None, Presence("offline")),
        (None, False, None, Presence("offline")),  # never set a status
        ("online", False, 61_000, Presence("disconnected", 61_000)),
        ("away", False, 61_000, Presence("disconnected", 61_000)),
        ("online", False, None, Presence("disconnected", 1_000 + 60_000)),  # not noted yet
        ("online", False, 1_000, Presence("offline")),  # the grace is over
    ],
)
def test_presence_is_what_the_agent_chose_while_connected(
    chosen: str | None, connected: bool, grace_ends: int | None, seen: Presence
) -> None:
    assert presence(chosen, connected, grace_ends, now=1_000, grace_ms=60_000) == seen


async def until(check: Any, timeout: float = 5.0) -> Any:
    """Poll ``check()`` (async) until it returns something true; that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{check.__name__} never held")


async def test_an_agent_who_closed_the_tab_shows_disconnected_with_chats_held(
    redis_db: str,
) -> None:
    grace_s = 3.0
    async with running(redis_db, grace_period_s=grace_s) as srv:
        ag = await agent(srv, redis_db, "jelena")
        vi = await visitor(srv)
        conv = (await vi.say("hello"))["conversation"]
        await ag.expect("assignment", conversation=conv)
        await make_account(redis_db, "boss", role="supervisor")
        headers = {"Authorization": f"Bearer {await session_token(srv.base, 'boss')}"}
        async with httpx.AsyncClient(base_url=srv.base, headers=headers, timeout=5) as http:

            async def jelena() -> dict[str, Any]:
                items = (await http.get("/api/agents")).json()["items"]
                return next(a for a in items if a["id"] == "jelena")

            async def row() -> dict[str, Any]:
                items = (await http.get("/api/review/live")).json()["items"]
                return next(c for c in items if c["conversation"] == conv)

            assert (await jelena())["status"] == "online" and (await jelena())["held_until"] is None
            assert (await row())["agent_status"] == "online"
            loop = asyncio.get_running_loop()
            closed_ms = int(time.time() * 1000)
            await ag.close()
            started = loop.time()

            async def disconnected() -> dict[str, Any] | None:
                a = await jelena()
                return a if a["status"] == "disconnected" else None

            gone = await until(disconnected, timeout=grace_s / 2)
            assert closed_ms + grace_s * 1000 - 500 <= gone["held_until"]
            assert gone["held_until"] <= closed_ms + grace_s * 1000 + 1000
            assert gone["open"] == 1  # the chat is still hers, held
            live = await row()
            assert (live["agent"], live["agent_status"]) == ("jelena", "disconnected")
            # Read before the sweep noted the grace period, held_until is foreseen from now.
            assert abs(live["held_until"] - gone["held_until"]) <= 1000
            assert loop.time() - started < grace_s  # all seen within the grace period

            async def offline() -> dict[str, Any] | None:
                # The sweep marks her offline, then gives her chat back to the queue.
                a = await jelena()
                return a if a["status"] == "offline" and a["open"] == 0 else None

            after = await until(offline, timeout=grace_s + 5)
            assert after["held_until"] is None
            requeued = await row()
            assert requeued["agent"] is None and requeued["agent_status"] is None
        await vi.close()
