"""Hostile input: protocol v1 fuzzed with hypothesis against a real in-process server.

One server and one Redis database for the module. A "victim" visitor chats with
the agent "owner" in a conversation whose text is a secret; the fuzzer speaks
as another visitor and as another agent ("intruder"). After every fuzzed frame
the fuzzer sends a ``ping`` and reads up to its ``pong`` (or the close), so
each frame's answers are checked one by one:

- the server never crashes: the connection answers the ping, or was closed
  with a documented close code for a documented reason;
- a frame the protocol rejects gets an ``error`` frame with the code the
  parser gives it, and no frame ever gets ``internal``;
- every frame sent back is a documented type, and none of them carries the
  victim's conversation or its text.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from server import protocol as p
from server.errors import ErrorCode, ProtocolError
from server.tokens import sign
from tests.conftest import TEST_SECRET
from tests.server.support import (
    Client,
    agent,
    connect,
    make_account,
    running,
    session_token,
    visitor_token,
)

pytestmark = pytest.mark.timeout(180)

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# What the server may send (docs/protocol.md §5.4, docs/coaching.md).
SERVER_TYPES = {
    "welcome", "ack", "message", "read", "assigned", "transferred", "closed", "typing",
    "queue", "assignment", "queue_snapshot", "pong", "error", "coach", "script", "nudge",
    "whisper", "coach_checked", "watching",
}  # fmt: skip
DOCUMENTED_CODES = {c.value for c in ErrorCode}
# Close codes a hostile frame may earn (never 1011: that is the server breaking).
HOSTILE_CLOSES = {1007, 1008, 1009, 4001}
FRAME_LIMIT = 16 * 1024
# Redis stream ids are two unsigned 64-bit integers; the protocol allows 20 digits each.
U64_MAX = 2**64 - 1
STREAM_ID_EDGES = [
    f"{U64_MAX}-0",
    f"{U64_MAX}-{U64_MAX}",
    f"{U64_MAX - 1}-{U64_MAX}",
    f"{U64_MAX + 1}-0",
    f"0-{U64_MAX + 1}",
    "9" * 20 + "-" + "9" * 20,
]

# Timeouts
ANSWER_TIMEOUT_S = 5.0

_pings = itertools.count()


@dataclass
class World:
    """The shared server, the conversation that must stay private, and the fuzzers' tokens."""

    srv: Any
    url: str
    victim_conv: str
    secret_text: str
    victim_token: str
    fuzz_visitor_token: str
    intruder_token: str
    own_conv: str
    own_seqs: list[str]
    keep: list[Client] = field(default_factory=list)
    drains: list[asyncio.Task[None]] = field(default_factory=list)


async def _drain(client: Client) -> None:
    """Keep a connection read so that its outbound queue never fills."""
    try:
        while True:
            await client.ws.recv()
    except (websockets.ConnectionClosed, asyncio.CancelledError):
        return


def _fresh_db(redis_url: str, db: int) -> str:
    import redis as redis_sync

    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    c = redis_sync.Redis.from_url(base)
    try:
        dbs = int(c.config_get("databases").get("databases", 16))
    except redis_sync.ResponseError:
        dbs = 16
    c.close()
    url = f"{base}/{db % dbs}"
    c = redis_sync.Redis.from_url(url)
    c.flushdb()
    c.close()
    return url


@pytest.fixture(scope="module")
async def world(redis_url: str) -> AsyncIterator[World]:
    url = _fresh_db(redis_url, 250)
    async with running(
        url,
        rate_conn_per_s=10_000,
        rate_conn_burst=10_000,
        rate_ip_per_s=100_000,
        rate_ip_burst=100_000,
        grace_period_s=3600,
    ) as srv:
        owner = await agent(srv, url, "owner", capacity=1, languages=["en"])
        await make_account(url, "intruder", languages=["hr"])
        secret_text = "SECRET-" + str(time.time_ns())
        victim_token = await visitor_token(srv.base)
        victim = await connect(srv.ws, "/ws/visitor", victim_token)
        ack = await victim.say(secret_text)
        victim_conv = ack["conversation"]
        await owner.expect("assignment", conversation=victim_conv)
        await owner.say("the owner's reply, " + secret_text, conversation=victim_conv)
        # The fuzzing visitor's own conversation, in Croatian so that the owner never
        # takes it; queued, with a few events to resume from.
        fuzz_token = await visitor_token(srv.base, lang="hr")
        me = await connect(srv.ws, "/ws/visitor", fuzz_token)
        own_seqs = [(await me.say(f"mine {i}"))["seq"] for i in range(4)]
        own_conv = (await me.expect("message"))["conversation"]
        await me.close()
        w = World(
            srv=srv,
            url=url,
            victim_conv=victim_conv,
            secret_text=secret_text,
            victim_token=victim_token,
            fuzz_visitor_token=fuzz_token,
            intruder_token=await session_token(srv.base, "intruder"),
            own_conv=own_conv,
            own_seqs=own_seqs,
            keep=[owner, victim],
        )
        w.drains = [asyncio.create_task(_drain(c)) for c in w.keep]
        yield w
        for task in w.drains:
            task.cancel()
        for c in w.keep:
            await c.close()


# ------------------------------------------------------------------ checks


def assert_private(w: World, raw: str | bytes) -> dict[str, Any]:
    """A frame from the server: documented, and nothing of the victim's conversation in it."""
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    assert w.secret_text not in text, f"leaked the victim's text: {text[:300]}"
    frame = json.loads(text)
    assert isinstance(frame, dict) and frame.get("v") == 1, text[:300]
    assert frame.get("type") in SERVER_TYPES, text[:300]
    if frame["type"] == "error":
        assert frame["code"] in DOCUMENTED_CODES, frame
        assert frame["code"] != "internal", f"the server broke on a frame: {frame}"
    else:
        assert w.victim_conv not in text, f"leaked the victim's conversation: {text[:300]}"
    return frame


async def answers(w: World, client: Client) -> tuple[list[dict[str, Any]], int | None]:
    """Send a ping and read every frame up to its pong; (frames, close code or None)."""
    pid = f"fz{next(_pings)}"
    frames: list[dict[str, Any]] = []
    try:
        await client.send(type="ping", id=pid)
    except websockets.ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ANSWER_TIMEOUT_S
    while True:
        try:
            raw = await asyncio.wait_for(client.ws.recv(), deadline - loop.time())
        except websockets.ConnectionClosed as closed:
            return frames, closed.rcvd.code if closed.rcvd else None
        frame = assert_private(w, raw)
        if frame.get("ref") == pid and (
            frame["type"] == "pong" or frame.get("code") == "hello_required"
        ):
            return frames, None
        frames.append(frame)


def expected_code(raw: str | bytes, endpoint: str) -> ErrorCode | None:
    """The error code the protocol gives a frame on its own, or None when it parses."""
    frames = p.VISITOR_FRAMES if endpoint == "visitor" else p.AGENT_FRAMES
    try:
        p.parse_client_frame(raw, frames)
    except ProtocolError as err:
        return err.code
    return None


def oversized(raw: str | bytes) -> bool:
    return len(raw if isinstance(raw, bytes) else raw.encode()) > FRAME_LIMIT


async def check_frame(w: World, client: Client, raw: str | bytes, endpoint: str) -> bool:
    """Send one hostile frame and check what comes back; False once the connection is closed."""
    try:
        await client.send_raw(raw)
    except websockets.ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
        assert code in HOSTILE_CLOSES, code
        return False
    frames, closed_with = await answers(w, client)
    if oversized(raw):
        assert closed_with == 1009, (closed_with, frames)
        return False
    assert closed_with is None, f"closed with {closed_with} after {str(raw)[:200]!r}: {frames}"
    want = expected_code(raw, endpoint)
    errors = [f["code"] for f in frames if f["type"] == "error"]
    if want is not None:
        assert str(want) in errors, (str(raw)[:200], frames)
    return True


# ------------------------------------------------------------------ strategies

TYPES = sorted(set(p.VISITOR_FRAMES) | set(p.AGENT_FRAMES)) + ["", "HELLO", "error", "welcome"]
FIELD_NAMES = [
    "id", "text", "conversation", "active", "seq", "resume", "token", "status", "capacity",
    "languages", "to_agent", "to_team", "note", "draft_id", "override", "name", "email",
    "score", "comment", "extra",
]  # fmt: skip


def json_values(conv_ids: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40),
        st.text(min_size=3990, max_size=4100, alphabet="ab"),
        conv_ids,
        st.sampled_from(["online", "offline", "away", "en", "hr", "m-1", "owner", "intruder"]),
        st.builds(lambda a, b: f"{a}-{b}", st.integers(0, 10**20), st.integers(0, 10**20)),
        st.sampled_from(STREAM_ID_EDGES),
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=8,
    )


@st.composite
def hostile_frames(draw: st.DrawFn, w: World) -> str | bytes:
    conv_ids = st.sampled_from(
        [w.victim_conv, w.own_conv, "c_0123456789abcdef", "c_", "C_" + w.victim_conv[2:]]
    )
    kind = draw(st.integers(0, 9))
    if kind <= 4:  # an object that looks like a frame: right envelope, random fields
        frame: dict[str, Any] = {}
        if draw(st.integers(0, 9)):
            frame["v"] = draw(st.sampled_from([1, 1, 1, 1, 2, 0, "1", None, 1.5]))
        if draw(st.integers(0, 9)):
            frame["type"] = draw(st.sampled_from(TYPES))
        names = draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=5, unique=True))
        for name in names:
            frame[name] = draw(json_values(conv_ids))
        return json.dumps(frame)
    if kind == 5:  # any JSON value at all
        return json.dumps(draw(json_values(conv_ids)))
    if kind == 6:  # any text
        return draw(st.text(max_size=200))
    if kind == 7:  # binary
        return draw(st.binary(max_size=200))
    if kind == 8:  # deeply nested JSON, under and over the frame limit
        depth = draw(st.integers(1, 12_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return opener * depth + "1" + closer * depth
    # huge: close to, at and over the frame limit
    size = draw(st.sampled_from([FRAME_LIMIT - 100, FRAME_LIMIT + 1, 4 * FRAME_LIMIT]))
    mid = draw(st.sampled_from(["m-big", "x"]))
    head = '{"v":1,"type":"message","id":"' + mid + '","text":"'
    return head + "y" * max(0, size - len(head) - 2) + '"}'


async def fuzz(w: World, endpoint: str, token: str, frames: list[str | bytes]) -> None:
    client = await connect(w.srv.ws, f"/ws/{endpoint}", token, max_size=None)
    try:
        assert client.welcome["type"] == "welcome", client.welcome
        for raw in frames:
            if not await check_frame(w, client, raw, endpoint):
                break
    finally:
        await client.close()


# ------------------------------------------------------------------ tests


@FUZZ
@given(data=st.data())
async def test_hostile_visitor_frames_get_errors_and_reveal_nothing(
    world: World, data: st.DataObject
) -> None:
    frames = data.draw(st.lists(hostile_frames(world), min_size=1, max_size=4))
    await fuzz(world, "visitor", world.fuzz_visitor_token, frames)


@FUZZ
@given(data=st.data())
async def test_hostile_agent_frames_get_errors_and_reveal_nothing(
    world: World, data: st.DataObject
) -> None:
    frames = data.draw(st.lists(hostile_frames(world), min_size=1, max_size=4))
    await fuzz(world, "agent", world.intruder_token, frames)


@FUZZ
@given(data=st.data(), endpoint=st.sampled_from(["visitor", "agent"]))
async def test_frames_before_hello_are_refused(
    world: World, data: st.DataObject, endpoint: str
) -> None:
    raw = data.draw(hostile_frames(world))
    ws = await websockets.connect(world.srv.ws + f"/ws/{endpoint}", open_timeout=5, max_size=None)
    client = Client(ws)
    try:
        await client.send_raw(raw)
        frames, closed_with = await answers(world, client)
        if oversized(raw):
            assert closed_with == 1009
            return
        want = expected_code(raw, endpoint)
        codes = [f["code"] for f in frames if f["type"] == "error"]
        assert not [f for f in frames if f["type"] == "welcome"], frames
        if want is None and json.loads(raw).get("type") != "hello":
            want = ErrorCode.HELLO_REQUIRED
        if want is not None:
            assert str(want) in codes, (raw, frames)
        elif closed_with is not None:  # a hello with a token that is not one
            assert closed_with == 4001 and codes[0] in ("token_invalid", "token_expired")
        # A ping before hello is itself answered with hello_required, not pong.
    finally:
        await client.close()


@st.composite
def forged_tokens(draw: st.DrawFn, w: World) -> tuple[str, str]:
    """(endpoint, token) pairs that must never open a session."""
    endpoint = draw(st.sampled_from(["visitor", "agent"]))
    kind = "visitor" if endpoint == "visitor" else "session"
    now = int(time.time())
    claims: dict[str, Any] = {
        "k": kind,
        "sub": draw(st.sampled_from(["owner", "intruder", "v_x", "supervisor", ""])),
        "site": draw(st.sampled_from(["acme", "demo", "", "nope"])),
        "exp": now + draw(st.integers(60, 10**8)),
        "role": draw(st.sampled_from(["agent", "supervisor", "visitor"])),
    }
    how = draw(
        st.sampled_from(["wrong secret", "expired", "tampered", "wrong kind", "garbage", "site"])
    )
    if how == "wrong secret":
        secret = draw(st.text(min_size=1, max_size=60).filter(lambda s: s != TEST_SECRET))
        return endpoint, sign(secret, claims)
    if how == "expired":
        claims["exp"] = now - draw(st.integers(1, 10**8))
        return endpoint, sign(TEST_SECRET, claims)
    if how == "tampered":  # a real token of the fuzzer with someone else's claims pasted in
        real = w.fuzz_visitor_token if endpoint == "visitor" else w.intruder_token
        body = sign(TEST_SECRET, claims | {"sub": "owner"}).split(".")[0]
        return endpoint, body + "." + real.split(".")[1]
    if how == "wrong kind":
        return endpoint, w.intruder_token if endpoint == "visitor" else w.fuzz_visitor_token
    if how == "site":
        claims["site"] = draw(st.sampled_from(["nope", "", "ACME"]))
        return "visitor", sign(TEST_SECRET, claims | {"k": "visitor"})
    return endpoint, draw(
        st.one_of(
            st.text(min_size=1, max_size=300),
            st.from_regex(r"\A[A-Za-z0-9_-]{0,80}\.[A-Za-z0-9_-]{0,60}\Z"),
            st.text(min_size=2049, max_size=2100, alphabet="a."),
        )
    )


@FUZZ
@given(data=st.data())
async def test_forged_expired_and_foreign_tokens_are_refused_with_4001(
    world: World, data: st.DataObject
) -> None:
    endpoint, token = data.draw(forged_tokens(world))
    ws = await websockets.connect(world.srv.ws + f"/ws/{endpoint}", open_timeout=5)
    client = Client(ws)
    try:
        await client.send(type="hello", token=token)
        first = assert_private(world, await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_S))
        assert first["type"] == "error", first
        if len(token) > 2048:  # over the field's limit: a schema error, the socket stays open
            assert first["code"] == "invalid_frame"
            return
        assert first["code"] in ("token_invalid", "token_expired"), first
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_S)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    finally:
        await client.close()


@st.composite
def cursors(draw: st.DrawFn, w: World) -> dict[str, Any]:
    """``hello.resume``: replayed, future, malformed cursors and conversations not ours."""
    first_ms = int(w.own_seqs[0].split("-")[0])

    def cursor() -> Any:
        return draw(
            st.one_of(
                st.sampled_from(w.own_seqs + ["0-0", "0-1"]),  # replayed
                st.sampled_from(STREAM_ID_EDGES),
                st.sampled_from(STREAM_ID_EDGES),
                st.builds(
                    lambda d, n: f"{first_ms + d}-{n}",
                    st.integers(-5, 10**6),
                    st.integers(0, 3),
                ),  # around and after the real ones
                st.builds(
                    lambda a, b: f"{a}-{b}", st.integers(0, 10**20), st.integers(0, 10**20)
                ),  # up to 20 digits, past 2**64
                st.text(max_size=45),
                st.integers(),
            )
        )

    resume: dict[str, Any] = {}
    for conv in draw(
        st.lists(
            st.sampled_from(
                [w.own_conv, w.victim_conv, "c_0123456789abcdef", "c_zz", "", w.own_conv.upper()]
            ),
            max_size=3,
            unique=True,
        )
    ):
        resume[conv] = cursor()
    return resume


async def stream_after(url: str, conv: str, cursor: str) -> list[str]:
    r = Redis.from_url(url, decode_responses=True)
    try:
        return [
            seq
            for seq, _ in await r.xrange(f"{{conv:{conv}}}:events", "-", "+")
            if p.seq_key(seq) > p.seq_key(cursor)
        ]
    finally:
        await r.aclose()


@FUZZ
@given(data=st.data())
async def test_replayed_future_and_foreign_cursors(world: World, data: st.DataObject) -> None:
    resume = data.draw(cursors(world))
    ws = await websockets.connect(world.srv.ws + "/ws/visitor", open_timeout=5)
    client = Client(ws)
    try:
        await client.send(type="hello", token=world.fuzz_visitor_token, resume=resume)
        first = assert_private(world, await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_S))
        try:
            p.Hello.model_validate({"type": "hello", "token": "t", "resume": resume})
            valid = True
        except ValueError:
            valid = False
        if not valid:
            assert (first["type"], first.get("code")) == ("error", "invalid_frame"), first
            frames, closed_with = await answers(world, client)  # still open: hello_required
            assert closed_with is None
            return
        assert first["type"] == "welcome", first
        views = {v["conversation"]: v for v in first["conversations"]}
        assert {v["visitor"]["id"] for v in views.values()} <= {first["user"]["id"]}
        cursor = resume.get(world.own_conv)
        if cursor is None:
            return
        seqs = [e["seq"] for e in views[world.own_conv]["events"]]
        assert seqs == await stream_after(world.url, world.own_conv, cursor)
    finally:
        await client.close()


@FUZZ
@given(payload=st.binary(min_size=1, max_size=64))
async def test_invalid_utf8_in_a_text_frame_closes_1007(world: World, payload: bytes) -> None:
    try:
        payload.decode("utf-8")
        return  # valid UTF-8: covered by the frame tests above
    except UnicodeDecodeError:
        pass
    client = await connect(world.srv.ws, "/ws/visitor", world.fuzz_visitor_token)
    try:
        await client.ws.send(payload, text=True)
        frames, closed_with = await answers(world, client)
        assert closed_with == 1007, (closed_with, frames)
    finally:
        await client.close()
