"""Accounts' display names, as the server reads them, on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server import redisconn
from server.accounts import add_account, display_names
from server.routing import Names
from tests.server.support import PASSWORD


@pytest.fixture
async def redis(redis_db: str) -> AsyncIterator[Redis]:
    conns = await redisconn.connect(redis_db)
    try:
        yield conns.commands
    finally:
        await conns.aclose()


async def rename(redis: Redis, name: str, display_name: str) -> None:
    """What ``tactline users add NAME --display-name …`` does to an existing account."""
    await add_account(redis, name, "agent", PASSWORD, display_name=display_name)


async def test_display_names_are_read_as_they_are_now(redis: Redis) -> None:
    await rename(redis, "jelena", "Jelena")
    await rename(redis, "marko", "Marko")
    assert await display_names(redis, ["marko", "jelena", "gone", "marko", ""]) == {
        "jelena": "Jelena",
        "marko": "Marko",
        "gone": "gone",  # an account that no longer exists is named by its id
    }
    await rename(redis, "jelena", "Jelena Petrović")
    assert await display_names(redis, ["jelena"]) == {"jelena": "Jelena Petrović"}
    assert await display_names(redis, []) == {}


async def test_a_renamed_agent_is_named_anew_once_the_name_kept_is_due(redis: Redis) -> None:
    now = [1000.0]
    names = Names(redis, ttl_s=5.0, clock=lambda: now[0])
    await rename(redis, "jelena", "Jelena")
    assert (await names.agent("jelena")).name == "Jelena"
    await rename(redis, "jelena", "Jelena Petrović")
    now[0] += 4.9
    assert (await names.agent("jelena")).name == "Jelena"  # kept: no read per event
    now[0] += 0.1
    assert (await names.agent("jelena")).name == "Jelena Petrović"
    # Another process's cache is no different: each reads the name again when it is due.
    other = Names(redis, ttl_s=5.0, clock=lambda: now[0])
    assert (await other.agent("jelena")).name == "Jelena Petrović"
    assert (await names.agent("nobody")).name == "nobody"
