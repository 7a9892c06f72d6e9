"""Drafts checked in a process of their own (server/checker.py), with the real coach,
server and Redis: the same answers as in the server process, at a lower priority, and
the chat's coaching goes on when the checker dies or the rules change."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from coach import Coach
from server.checker import NICENESS, DraftChecker
from server.relay import DraftDesk
from server.rules_runtime import RulesRuntime
from tests.server.support import (
    agent,
    apply_a_suggestion,
    burst_of_drafts,
    close_all,
    open_chat,
    running_with_coach,
    start_chat,
    supervisor_http,
)

ROOT = Path(__file__).resolve().parents[2]
#: A reload compiles the rules that changed: seconds, more on a busy machine.
RELOAD_TIMEOUT_S = 120.0
READY_S = 60.0
LANGS = ("en", "sr", "hr", "sl")

FOGGIEST = """
  - id: en.dont_know.not_the_foggiest
    severity: warning
    match:
      - phrase: not the foggiest
    message: Saying you have no idea leaves the customer with nothing; say what you will do.
    suggestions:
      - Let me find out for you
    examples:
      flag:
        - Not the foggiest.
      pass:
        - I will find out for you.
"""

DRAFTS = [
    ("en", "I don't know, that's not my job."),
    ("en", "Calm down, it's not our fault."),
    ("sr", "Не знам, то није мој посао."),
    ("sr", "Ne znam, to nije moj posao."),
    ("hr", "Nažalost, to nije moj posao."),
    ("sl", "Ne vem, to ni moje delo."),
    ("en", "Thanks for waiting, your parcel ships today."),
]


def desk(srv: Any) -> DraftDesk:
    return srv.app.state.relay.drafts  # type: ignore[no-any-return]


async def checker_ready(srv: Any) -> DraftChecker:
    """The server's draft checker, once it runs the server process's rules."""
    d = desk(srv)
    assert d.checker is not None
    d.checker.start()  # as the first draft does
    async with asyncio.timeout(READY_S):
        while not d.checker.usable():
            await asyncio.sleep(0.05)
    return d.checker


async def test_the_checker_answers_drafts_as_the_server_process_would(
    redis_db: str, tmp_path: Path
) -> None:
    async with running_with_coach(redis_db, draft_checker=True, data_dir=tmp_path / "var") as srv:
        checker = await checker_ready(srv)
        pid = checker.pid
        assert pid is not None and pid != os.getpid()
        # The child runs at a lower priority than the server process.
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + NICENESS
        coach: Coach = srv.app.state.coach.coach
        ag = await agent(srv, redis_db, "ana", capacity=4, languages=["en", "sr", "hr", "sl"])
        chats = {lang: await open_chat(srv, ag, "Zdravo!", lang=lang) for lang in LANGS}
        before = checker.checked
        for n, (lang, text) in enumerate(DRAFTS, start=1):
            conv = chats[lang][1]
            await ag.send(type="draft", conversation=conv, draft_id=n, text=text)
            answer = await ag.expect("coach", conversation=conv, draft_id=n)
            expected = [f.model_dump() for f in coach.check(text, lang, "agent")]
            assert answer["flags"] == expected
            assert bool(expected) == (n < len(DRAFTS))  # the last one reads well
        assert checker.checked - before == len(DRAFTS)
        await close_all(ag, *(vi for vi, _ in chats.values()))


async def test_the_checker_starts_with_the_first_draft(redis_db: str, tmp_path: Path) -> None:
    async with running_with_coach(redis_db, draft_checker=True, data_dir=tmp_path / "var") as srv:
        checker = desk(srv).checker
        assert checker is not None
        ag, vi, conv = await start_chat(srv, redis_db)
        await asyncio.sleep(0.5)
        assert not checker.active and checker.pid is None  # nobody typed: no child
        await ag.send(type="draft", conversation=conv, draft_id=1, text="I don't know.")
        # Answered at once, by the server process, while the child starts.
        answer = await ag.expect("coach", conversation=conv, draft_id=1)
        assert [f["category"] for f in answer["flags"]] == ["dont_know"]
        assert checker.active and checker.checked == 0
        await checker_ready(srv)
        await ag.send(type="draft", conversation=conv, draft_id=2, text="Calm down.")
        await ag.expect("coach", conversation=conv, draft_id=2)
        assert checker.checked == 1 and checker.pid is not None
        await close_all(ag, vi)


async def test_suggestions_shown_by_the_checker_count_as_applied(
    redis_db: str, tmp_path: Path
) -> None:
    async with running_with_coach(redis_db, draft_checker=True, data_dir=tmp_path / "var") as srv:
        checker = await checker_ready(srv)
        ag, vi, conv = await start_chat(srv, redis_db)
        before = checker.checked
        checked = await apply_a_suggestion(ag, conv)
        assert checker.checked == before + 1
        assert checked["outcome"] == "applied"
        await close_all(ag, vi)


async def test_drafts_are_answered_while_the_checker_is_killed_and_replaced(
    redis_db: str, tmp_path: Path
) -> None:
    async with running_with_coach(redis_db, draft_checker=True, data_dir=tmp_path / "var") as srv:
        checker = await checker_ready(srv)
        first = checker.pid
        assert first is not None
        ag, vi, conv = await start_chat(srv, redis_db)
        os.kill(first, signal.SIGKILL)
        # Every draft is answered: by the server process until a new checker is ready.
        for n in range(1, 6):
            await ag.send(type="draft", conversation=conv, draft_id=n, text="I don't know.")
            answer = await ag.expect("coach", conversation=conv, draft_id=n)
            assert [f["category"] for f in answer["flags"]] == ["dont_know"]
        replaced = await checker_ready(srv)
        assert replaced.pid not in (None, first) and replaced.started == 2
        before = replaced.checked
        await ag.send(type="draft", conversation=conv, draft_id=9, text="Calm down.")
        answer = await ag.expect("coach", conversation=conv, draft_id=9)
        assert [f["category"] for f in answer["flags"]] == ["dismissive"]
        assert replaced.checked == before + 1
        await close_all(ag, vi)


async def test_the_checker_follows_a_rules_reload_and_keeps_its_rules_on_a_bad_one(
    redis_db: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    async with running_with_coach(
        redis_db, draft_checker=True, rules_dir=rules, data_dir=tmp_path / "var"
    ) as srv:
        checker = await checker_ready(srv)
        old = checker.fingerprint
        ag, vi, conv = await start_chat(srv, redis_db)
        path = rules / "en" / "dont_know.yaml"
        good = path.read_text(encoding="utf-8").rstrip("\n") + "\n" + FOGGIEST
        async with await supervisor_http(srv, redis_db) as sup:
            path.write_text(good, encoding="utf-8")
            assert (
                await sup.post("/api/rules/reload", timeout=RELOAD_TIMEOUT_S)
            ).status_code == 200
            # Meanwhile the server process answers drafts with its new rules; then the child
            # has them too.
            await ag.send(type="draft", conversation=conv, draft_id=1, text="Not the foggiest.")
            answer = await ag.expect("coach", conversation=conv, draft_id=1)
            assert [f["category"] for f in answer["flags"]] == ["dont_know"]
            checker = await checker_ready(srv)
            assert checker.fingerprint != old
            before = checker.checked
            await ag.send(type="draft", conversation=conv, draft_id=2, text="Not the foggiest!")
            answer = await ag.expect("coach", conversation=conv, draft_id=2)
            assert [f["category"] for f in answer["flags"]] == ["dont_know"]
            assert checker.checked == before + 1

            # A bad file: the server process keeps its rules, and so does the checker.
            path.write_text(good.replace("category: dont_know", "category: rudeness", 1))
            await asyncio.sleep(0)
            assert (
                await sup.post("/api/rules/reload", timeout=RELOAD_TIMEOUT_S)
            ).status_code == 422
            kept = checker.fingerprint
            await ag.send(type="draft", conversation=conv, draft_id=3, text="Not the foggiest.")
            answer = await ag.expect("coach", conversation=conv, draft_id=3)
            assert [f["category"] for f in answer["flags"]] == ["dont_know"]
            assert checker.usable() and checker.fingerprint == kept
        await close_all(ag, vi)


async def test_a_burst_of_drafts_waits_for_the_checker_as_one_newest_draft(
    redis_db: str, tmp_path: Path
) -> None:
    # Forty drafts in one TCP write: while the checker has a batch, the newest draft of
    # the chat takes the place of the others, so a few answers come, in order, the last
    # for draft 40.
    async with running_with_coach(
        redis_db, draft_checker=True, rate_conn_burst="100", data_dir=tmp_path / "var"
    ) as srv:
        checker = await checker_ready(srv)
        ag, vi, conv = await start_chat(srv, redis_db)
        before = checker.checked
        await burst_of_drafts(ag, conv, "I don't know, that's not my job, but let me check")
        last = await ag.expect("coach", conversation=conv, draft_id=40)
        assert {f["category"] for f in last["flags"]} >= {"dont_know", "not_my_job"}
        answers = [f for f in ag.skipped if f.get("type") == "coach"]
        answers += [last, *await ag.quiet("coach")]
        ids = [f["draft_id"] for f in answers]
        assert ids == sorted(ids) and ids[-1] == 40 and len(ids) < 10, ids
        assert checker.checked - before == len(ids)
        await close_all(vi, ag)


@contextlib.asynccontextmanager
async def checker_alone(tmp_path: Path) -> AsyncIterator[DraftChecker]:
    """A draft checker of the project's rules, without a server, once it is usable."""
    runtime = RulesRuntime(ROOT / "rules", cache_dir=tmp_path / "cache")
    assert await runtime.reload()
    assert runtime.coach is not None
    fingerprint = runtime.coach.fingerprint
    checker = DraftChecker(ROOT / "rules", tmp_path / "cache", lambda: fingerprint)
    checker.start()
    try:
        async with asyncio.timeout(READY_S):
            while not checker.usable():
                await asyncio.sleep(0.05)
        yield checker
    finally:
        await checker.stop()
        gc.unfreeze()


async def test_a_draft_the_coach_cannot_check_does_not_end_the_checker(tmp_path: Path) -> None:
    async with checker_alone(tmp_path) as checker:
        pid = checker.pid
        # A language the coach does not know raises in the child: that draft gets no
        # flags, the next ones theirs, from the same child.
        (_, bad), (_, good) = await checker.check([("xx", "Hello"), ("en", "I don't know.")])
        assert bad == "[]"
        assert [f["category"] for f in json.loads(good)] == ["dont_know"]
        assert checker.pid == pid and checker.started == 1
    assert checker.pid is None


async def test_a_checker_that_dies_while_reloading_is_replaced(tmp_path: Path) -> None:
    async with checker_alone(tmp_path) as checker:
        pid = checker.pid
        assert pid is not None
        # Killed (out of memory, say) just as it was told to load the rules again.
        os.kill(pid, signal.SIGKILL)
        await checker.reload()
        async with asyncio.timeout(READY_S):
            while not (checker.usable() and checker.pid != pid):
                await asyncio.sleep(0.05)
        assert checker.started == 2
        [(_, flags)] = await checker.check([("en", "I don't know.")])
        assert [f["category"] for f in json.loads(flags)] == ["dont_know"]
