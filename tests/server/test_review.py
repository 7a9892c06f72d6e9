"""Supervisor review helpers without a server."""

from __future__ import annotations

from typing import Any

import pytest

from server.review import waiting_since


def msg(role: str, ts: int) -> dict[str, Any]:
    return {"type": "message", "from": {"role": role}, "ts": ts}


@pytest.mark.parametrize(
    ("newest_first", "since"),
    [
        ([], None),
        ([msg("visitor", 10)], 10),
        ([msg("visitor", 30), msg("visitor", 20), msg("agent", 15), msg("visitor", 10)], 20),
        ([msg("agent", 20), msg("visitor", 10)], None),
        ([msg("supervisor", 20), msg("visitor", 10)], None),
        ([{"type": "assigned", "ts": 25}, msg("visitor", 20), msg("agent", 15)], 20),
    ],
)
def test_waiting_since_is_the_oldest_unanswered_visitor_message(
    newest_first: list[dict[str, Any]], since: int | None
) -> None:
    assert waiting_since(newest_first) == since
