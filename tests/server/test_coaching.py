"""The coaching service on a real Redis: refusals, outcomes, scripts, hold nudges."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from coach import Coach
from server.coaching import WAIT_KEY, Coaching, CoachingError, Drafts, conv_key, cue_excerpt
from server.rules_runtime import RulesRuntime


@pytest.fixture(scope="module")
def loaded_coach() -> Coach:
    return Coach.load(check_examples=False)


class Delivered:
    """Frames the service hands to the relay for an agent."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, agent: str, frame: dict[str, Any]) -> None:
        self.frames.append((agent, frame))


@pytest.fixture
async def service(
    redis_db: str, loaded_coach: Coach
) -> AsyncIterator[tuple[Coaching, Delivered, Redis]]:
    redis = Redis.from_url(redis_db, decode_responses=True)
    rules = RulesRuntime(Path("rules"))
    rules.coach = loaded_coach
    delivered = Delivered()
    yield Coaching(redis, rules, delivered, hold_after_s=60, cue_cooldown_s=300), delivered, redis
    await redis.aclose()


async def _conversation(
    redis: Redis, conv: str, lang: str = "en", agent: str = "ana"
) -> dict[str, str]:
    state = {
        "id": conv,
        "lang": lang,
        "status": "assigned",
        "agent": agent,
        "visitor": "v1",
        "visitor_name": "Marko",
        "created": "1700000000000",
    }
    await redis.hset(conv_key(conv, "state"), mapping=state)
    await redis.hset("{tl}:agent:" + agent, mapping={"name": "Ana"})
    return state


def test_drafts_answer_only_the_newest(service) -> None:
    coaching, _, _ = service
    drafts = Drafts()
    assert coaching.check_draft(drafts, 2, "I don't know", "en")
    assert coaching.check_draft(drafts, 1, "I don't know", "en") is None  # older: dropped
    assert coaching.check_draft(drafts, 3, "Let me check", "en") == []


def test_sensitive_data_request_is_refused_until_overridden(service) -> None:
    coaching, _, _ = service
    with pytest.raises(CoachingError) as info:
        coaching.check_sent(
            "Please send me your full card number and the CVV.", "en", override=False
        )
    assert info.value.flags and info.value.flags[0].suggestions
    sent = coaching.check_sent(
        "Please send me your full card number and the CVV.", "en", override=True
    )
    assert any(f.category == "sensitive_data_request" for f in sent.flags)


def test_card_numbers_are_masked_before_checking(service) -> None:
    coaching, _, _ = service
    sent = coaching.check_sent("Is it the card 4111 1111 1111 1111?", "en", override=False)
    assert sent.masked and "1111 1111 1111 1111" not in sent.text and sent.text.endswith("1111?")


async def test_outcomes_applied_ignored_not_seen(service) -> None:
    coaching, _, redis = service
    state = await _conversation(redis, "c_out")
    agent = {"id": "ana", "name": "Ana"}
    drafts = Drafts()
    shown = coaching.check_draft(drafts, 1, "I don't know.", "en")
    assert shown
    suggestion = shown[0].suggestions[0]
    applied = coaching.check_sent(f"{suggestion}.", "en", override=False)
    outcome, records, _ = await coaching.record_sent(
        "c_out", state, agent, "m1", "1-0", applied, drafts, False
    )
    assert outcome == "applied" and records[0]["outcome"] == "applied"

    coaching.check_draft(drafts, 2, "I don't know.", "en")
    ignored = coaching.check_sent("I don't know.", "en", override=False)
    outcome, records, _ = await coaching.record_sent(
        "c_out", state, agent, "m2", "2-0", ignored, drafts, False
    )
    assert outcome == "ignored"

    unseen = coaching.check_sent("That's not my job.", "en", override=False)
    outcome, records, _ = await coaching.record_sent(
        "c_out", state, agent, "m3", "3-0", unseen, Drafts(), False
    )
    assert outcome == "not_seen"
    stored = [json.loads(v) for v in await redis.hvals(conv_key("c_out", "flags"))]
    assert sorted(r["outcome"] for r in stored) == ["applied", "ignored", "not_seen"]
    assert int(await redis.hget("{tl}:rule-fires", records[0]["rule"])) == 1


async def test_first_agent_reply_without_introduction_is_nudged(service) -> None:
    coaching, _, redis = service
    state = await _conversation(redis, "c_intro")
    sent = coaching.check_sent("How can I help?", "en", override=False)
    _, _, nudges = await coaching.record_sent(
        "c_intro", state, {"id": "ana", "name": "Ana"}, "m1", "1-0", sent, None, False
    )
    assert [n.category for n in nudges] == ["missing_introduction"]
    assert "Ana" in nudges[0].suggestions[0]


async def test_upset_customer_gets_one_script_per_cooldown(service) -> None:
    coaching, delivered, redis = service
    state = await _conversation(redis, "c_upset")
    frames = await coaching.customer_message(
        "c_upset", state, "1-0", "This is RIDICULOUS, worst service ever!!!"
    )
    assert [f["category"] for f in frames] == ["frustration"]
    assert delivered.frames[0][0] == "ana"
    assert "Marko" in " ".join(delivered.frames[0][1]["scripts"])
    again = await coaching.customer_message(
        "c_upset", state, "2-0", "Seriously, this is ridiculous!!!"
    )
    assert again == []
    log = await redis.lrange(conv_key("c_upset", "coachlog"), 0, -1)
    assert [json.loads(r)["kind"] for r in log].count("script") == 1


async def test_waiting_customer_is_nudged_once(service) -> None:
    coaching, delivered, redis = service
    state = await _conversation(redis, "c_wait")
    await coaching.customer_message("c_wait", state, "1-0", "Hello, is anyone there?")
    due = await redis.zscore(WAIT_KEY, "c_wait")
    assert due is not None
    assert await coaching.tick_once(int(due) - 1000) == []
    sent = await coaching.tick_once(int(due) + 1000)
    assert [n.category for _, n in sent] == ["hold_without_update"]
    assert delivered.frames[-1][1]["type"] == "nudge"
    assert await coaching.tick_once(int(due) + 2000) == []


async def test_concurrent_customer_messages_share_one_state(service) -> None:
    # Ten upset messages handled at once (as by several processes): the conversation's
    # coach state is updated under its lock, so the script is offered once, not ten times.
    coaching, delivered, redis = service
    state = await _conversation(redis, "c-many")
    texts = [f"This is ridiculous, I am furious about order {i}!" for i in range(10)]
    await asyncio.gather(
        *(coaching.customer_message("c-many", state, f"{i}-0", t) for i, t in enumerate(texts))
    )
    scripts = [f for _, f in delivered.frames if f["category"] == "frustration"]
    assert len(scripts) == 1, delivered.frames
    saved = json.loads(await redis.get(conv_key("c-many", "coach")))
    assert saved["scripts_offered_at"].keys() == {"frustration"}
    assert await redis.exists(conv_key("c-many", "coach-lock")) == 0


async def test_a_lock_taken_over_after_expiry_is_not_overwritten(service) -> None:
    coaching, _, redis = service
    state = await _conversation(redis, "c-slow")
    async with coaching._conversation("c-slow", state) as chat:
        assert chat is not None
        chat.customer_message("I am furious!", 1_700_000_100.0)
        # The lock expired meanwhile and another process holds it now.
        await redis.set(conv_key("c-slow", "coach-lock"), "someone-else")
    assert await redis.get(conv_key("c-slow", "coach")) is None  # nothing saved over theirs
    assert await redis.get(conv_key("c-slow", "coach-lock")) == "someone-else"


def test_a_cue_is_quoted_whole_when_short_and_around_its_words_when_long() -> None:
    assert cue_excerpt("So angry!!!", 8, 11) == "So angry!!!"
    long = "word " * 40 + "THIS IS UNACCEPTABLE" + " word" * 40
    start = long.index("THIS")
    quoted = cue_excerpt(long, start, start + 20, limit=40)
    assert quoted.startswith("…") and quoted.endswith("…") and "THIS IS UNACCEPTABLE" in quoted
    assert len(quoted) <= 40
