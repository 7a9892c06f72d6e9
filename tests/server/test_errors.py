"""Each error code and close code of docs/protocol.md §7."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import websockets

from server.tokens import sign
from tests.conftest import TEST_SECRET
from tests.server.support import (
    agent,
    connect,
    make_account,
    open_chat,
    running,
    session_token,
    visitor,
    visitor_token,
)

# Frames that get an error on an authenticated visitor connection, which stays open.
VISITOR_CASES: list[tuple[str, Any, str]] = [
    ("not json", "this is {not json", "bad_json"),
    ("binary", b"\x00\x01", "bad_json"),
    ("array", "[1, 2]", "bad_json"),
    ("version", {"v": 2, "type": "ping"}, "unsupported_version"),
    ("unknown type", {"type": "whisper", "id": "w1"}, "unknown_type"),
    ("agent frame on visitor endpoint", {"type": "accept"}, "unknown_type"),
    ("missing field", {"type": "message", "id": "m1"}, "invalid_frame"),
    ("extra field", {"type": "ping", "colour": "red"}, "invalid_frame"),
    ("bad client id", {"type": "message", "id": "has space", "text": "x"}, "invalid_frame"),
    ("second hello", {"type": "hello", "token": "x"}, "already_authenticated"),
    ("typing without conversation", {"type": "typing"}, "no_conversation"),
    ("text too long", {"type": "message", "id": "long", "text": "x" * 4001}, "text_too_long"),
    (
        "someone else's conversation",
        {"type": "message", "id": "m2", "text": "hi", "conversation": "c_0123456789abcdef"},
        "not_in_conversation",
    ),
]


@pytest.mark.parametrize(
    ("frame", "code"),
    [(f, c) for _, f, c in VISITOR_CASES],
    ids=[name for name, _, _ in VISITOR_CASES],
)
async def test_error_frame_keeps_the_connection_open(redis_db: str, frame: Any, code: str) -> None:
    async with running(redis_db) as srv:
        vi = await visitor(srv)
        if isinstance(frame, dict):
            await vi.send(**frame)
        else:
            await vi.send_raw(frame)
        err = await vi.expect("error")
        assert err["code"] == code
        if isinstance(frame, dict) and "id" in frame:
            assert err["ref"] == frame["id"]
        await vi.send(type="ping", id="still-open")
        assert (await vi.expect("pong"))["ref"] == "still-open"
        await vi.close()


async def test_frames_before_hello_get_hello_required(redis_db: str) -> None:
    async with running(redis_db) as srv:
        ws = await websockets.connect(srv.ws + "/ws/visitor", open_timeout=5)
        await ws.send('{"v":1,"type":"ping","id":"p"}')
        err = await asyncio.wait_for(ws.recv(), 5)
        assert '"hello_required"' in err and '"ref":"p"' in err
        await ws.close()


AGENT_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("accept with empty queue", {"type": "accept"}, "queue_empty"),
    ("accept not queued", {"type": "accept", "conversation": "c_0123456789abcdef"}, "not_queued"),
    (
        "transfer to nobody",
        {"type": "transfer", "conversation": "c_0123456789abcdef", "to_agent": "ghost"},
        "not_in_conversation",
    ),
    ("message without conversation", {"type": "message", "id": "a1", "text": "x"}, "invalid_frame"),
    (
        "message in unassigned conversation",
        {"type": "message", "id": "a2", "text": "x", "conversation": "c_0123456789abcdef"},
        "not_in_conversation",
    ),
    ("leave_message on agent endpoint", {"type": "leave_message"}, "unknown_type"),
]


@pytest.mark.parametrize(
    ("frame", "code"), [(f, c) for _, f, c in AGENT_CASES], ids=[name for name, _, _ in AGENT_CASES]
)
async def test_agent_error_codes(redis_db: str, frame: dict[str, Any], code: str) -> None:
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "jelena")
        await ag.send(**frame)
        assert (await ag.expect("error"))["code"] == code
        await ag.close()


async def test_accept_while_away_is_no_capacity(redis_db: str) -> None:
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "jelena", online=False)
        await ag.send(type="status", status="away")
        await ag.send(type="accept")
        err = await ag.expect("error")
        assert err["code"] == "no_capacity"
        assert err["message"] == "you are away: set yourself online to accept chats"
        await ag.close()


async def test_accept_at_capacity_says_so(redis_db: str) -> None:
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "jelena", capacity=1)
        await open_chat(srv, ag, "Hello?")
        await ag.send(type="accept")
        err = await ag.expect("error")
        assert err["code"] == "no_capacity"
        assert err["message"] == "you have as many chats as your capacity (1): close one first"
        await ag.close()


async def test_supervisor_status_is_forbidden(redis_db: str) -> None:
    async with running(redis_db) as srv:
        await make_account(redis_db, "boss", role="supervisor")
        sup = await connect(srv.ws, "/ws/agent", await session_token(srv.base, "boss"))
        assert sup.welcome["role"] == "supervisor"
        await sup.send(type="status", status="online", id="s1")
        err = await sup.expect("error")
        assert (err["code"], err["ref"]) == ("forbidden", "s1")
        await sup.close()


async def test_transfer_to_offline_agent_is_agent_unavailable(redis_db: str) -> None:
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "jelena")
        await make_account(redis_db, "marko")
        vi = await visitor(srv)
        conv = (await vi.say("hi"))["conversation"]
        await ag.expect("assignment", conversation=conv)
        await ag.send(type="transfer", conversation=conv, to_agent="marko", note="n")
        assert (await ag.expect("error"))["code"] == "agent_unavailable"
        await ag.send(type="close", conversation=conv)
        await vi.expect("closed")
        await ag.send(type="message", id="late", text="x", conversation=conv)
        assert (await ag.expect("error"))["code"] == "conversation_closed"
        await ag.close()
        await vi.close()


async def test_leave_message_while_agents_online_is_rejected(redis_db: str) -> None:
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "jelena")
        vi = await visitor(srv)
        await vi.send(
            type="leave_message", id="lm", name="Ana", email="ana@example.com", text="call me"
        )
        assert (await vi.expect("error"))["code"] == "agents_online"
        await vi.close()
        await ag.close()


@pytest.mark.parametrize("case", ["forged", "expired", "wrong kind", "garbage"])
async def test_bad_token_gets_error_then_close_4001(redis_db: str, case: str) -> None:
    async with running(redis_db) as srv:
        good = await visitor_token(srv.base)
        body, _ = good.split(".")
        token = {
            "forged": sign(
                "another-secret-" + "y" * 40,
                {"k": "visitor", "sub": "v_x", "site": "acme", "exp": 2**40},
            ),
            "expired": sign(
                TEST_SECRET,
                {"k": "visitor", "sub": "v_x", "site": "acme", "exp": int(time.time()) - 1},
            ),
            "wrong kind": sign(TEST_SECRET, {"k": "session", "sub": "v_x", "exp": 2**40}),
            "garbage": body + ".AAAA",
        }[case]
        vi = await connect(srv.ws, "/ws/visitor", token)
        expected = "token_expired" if case == "expired" else "token_invalid"
        assert vi.welcome["code"] == expected
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await vi.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


async def test_session_token_forged_for_agent_endpoint_is_refused(redis_db: str) -> None:
    async with running(redis_db) as srv:
        await make_account(redis_db, "jelena")
        forged = sign("not-the-secret-" + "z" * 40, {"k": "session", "sub": "jelena", "exp": 2**40})
        ag = await connect(srv.ws, "/ws/agent", forged)
        assert ag.welcome["code"] == "token_invalid"
        visitor_as_agent = await connect(srv.ws, "/ws/agent", await visitor_token(srv.base))
        assert visitor_as_agent.welcome["code"] == "token_invalid"


async def test_oversized_frame_closes_1009(redis_db: str) -> None:
    async with running(redis_db) as srv:
        vi = await visitor(srv, max_size=None)
        await vi.send(type="message", id="big", text="x" * (17 * 1024))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await vi.expect("ack")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_rate_limit_sends_rate_limited_then_closes_1008(redis_db: str) -> None:
    async with running(redis_db, rate_conn_per_s=5, rate_conn_burst=5, rate_strikes=3) as srv:
        vi = await visitor(srv)
        for i in range(20):
            try:
                await vi.send(type="ping", id=f"p{i}")
            except websockets.ConnectionClosed:
                break
        codes = []
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                frame = await vi.recv()
                if frame["type"] == "error":
                    codes.append(frame["code"])
        assert codes and set(codes) == {"rate_limited"}
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_new_visitor_tokens_cost_the_address_budget(redis_db: str) -> None:
    # Each new visitor is a fresh per-person frame budget, so minting them is limited
    # by the client's address; renewing a visitor's own token is not.
    async with (
        running(redis_db, rate_ip_per_s=1, rate_ip_burst=5) as srv,
        httpx.AsyncClient(base_url=srv.base, timeout=5) as http,
    ):
        body = {"site": "acme", "lang": "en"}
        answers = [(await http.post("/api/visitors", json=body)) for _ in range(8)]
        codes = [r.status_code for r in answers]
        assert codes[:5] == [200] * 5 and 429 in codes[5:], codes
        refused = next(r for r in answers if r.status_code == 429)
        assert refused.json()["code"] == "rate_limited"
        renewed = await http.post(
            "/api/visitors", json={**body, "token": answers[0].json()["token"]}
        )
        assert renewed.status_code == 200
        assert renewed.json()["visitor_id"] == answers[0].json()["visitor_id"]
        await asyncio.sleep(1.1)
        assert (await http.post("/api/visitors", json=body)).status_code == 200


async def test_hello_timeout_closes_4002_and_idle_timeout_4004(redis_db: str) -> None:
    async with running(redis_db, hello_timeout_s=0.3, idle_timeout_s=0.5) as srv:
        ws = await websockets.connect(srv.ws + "/ws/visitor", open_timeout=5)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4002
        vi = await visitor(srv)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await vi.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4004


async def test_origin_not_allowed_is_refused_at_handshake(redis_db: str) -> None:
    async with running(redis_db) as srv:
        token = await visitor_token(srv.base)
        with pytest.raises(websockets.InvalidStatus) as refused:
            await connect(srv.ws, "/ws/visitor", token, origin="https://evil.example")
        assert refused.value.response.status_code == 403
        ok = await connect(srv.ws, "/ws/visitor", token, origin="https://acme.example")
        assert ok.welcome["type"] == "welcome"
        await ok.close()
