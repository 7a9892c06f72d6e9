"""Retention and the deletion of a visitor's data, on the real server and Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from redis.asyncio import Redis

from server.privacy import purge_expired
from server.store import G, conv_key
from tests.conftest import TEST_SECRET
from tests.server.support import agent, connect, make_account, running, session_token, visitor_token

ROOT = Path(__file__).resolve().parents[2]


async def test_deleting_a_visitor_removes_conversations_and_revokes_tokens(redis_db: str) -> None:
    async with running(redis_db) as srv:
        ag = await agent(srv, redis_db, "ana")
        token = await visitor_token(srv.base)
        vi = await connect(srv.ws, "/ws/visitor", token)
        ack = await vi.say("My email is ana@example.com, please delete me after.")
        conv = ack["conversation"]
        await ag.expect("assignment", conversation=conv)
        visitor_id = vi.welcome["user"]["id"]
        await vi.close()
        await make_account(redis_db, "sanja", role="supervisor")
        headers = {"Authorization": "Bearer " + await session_token(srv.base, "sanja")}
        agent_headers = {"Authorization": "Bearer " + await session_token(srv.base, "ana")}
        async with httpx.AsyncClient(base_url=srv.base, timeout=5) as http:
            denied = await http.delete(f"/api/visitors/{visitor_id}", headers=agent_headers)
            assert denied.status_code == 403
            r = await http.delete(f"/api/visitors/{visitor_id}", headers=headers)
            assert r.status_code == 200 and r.json()["conversations_deleted"] == 1
            gone = await http.get(f"/api/conversations/{conv}", headers=headers)
            assert gone.status_code == 404
        redis = Redis.from_url(redis_db, decode_responses=True)
        try:
            assert not await redis.exists(conv_key(conv, "events"), conv_key(conv, "state"))
            assert await redis.zscore(G + "convs", conv) is None
        finally:
            await redis.aclose()
        again = await connect(srv.ws, "/ws/visitor", token)
        assert again.welcome["type"] == "error" and again.welcome["code"] == "token_invalid"


async def test_retention_removes_only_old_closed_conversations(redis_db: str) -> None:
    redis = Redis.from_url(redis_db, decode_responses=True)
    try:
        day = 86_400_000
        now = 400 * day
        for conv, created, status in [
            ("c_old", now - 366 * day, "closed"),
            ("c_open", now - 400 * day, "assigned"),
            ("c_new", now - 10 * day, "closed"),
        ]:
            await redis.hset(conv_key(conv, "state"), mapping={"id": conv, "status": status})
            await redis.xadd(conv_key(conv, "events"), {"e": "{}"})
            await redis.zadd(G + "convs", {conv: created})
        assert await purge_expired(redis, 365, now=now) == 1
        assert await redis.zrange(G + "convs", 0, -1) == ["c_open", "c_new"]
        assert not await redis.exists(conv_key("c_old", "events"))
    finally:
        await redis.aclose()


def test_visitors_delete_command(redis_db: str) -> None:
    env = {"TACTLINE_REDIS_URL": redis_db, "TACTLINE_SECRET": TEST_SECRET, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "visitors", "delete", "v_nobody"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "deleted visitor v_nobody: 0 conversation(s)" in result.stdout
