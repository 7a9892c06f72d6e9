"""The pure parts: frame models against docs/protocol.md, tokens, rate limits, origins."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from server import protocol as p
from server.config import Site
from server.errors import ErrorCode, ProtocolError
from server.ratelimit import TokenBucket
from server.relay import origin_allowed
from server.tokens import sign, user_hash, verify

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def client_examples() -> list[tuple[str, str]]:
    """Every JSON example of §5.1–5.3 (client → server) with the endpoint it belongs to."""
    text = DOC.read_text()
    client_part = text[text.index("### 5.1") : text.index("### 5.4")]
    out = []
    for section in re.split(r"^### ", client_part, flags=re.M)[1:]:
        endpoint = "visitor" if section.startswith("5.2") else "agent"
        for block in re.findall(r"```json\n(.*?)```", section, flags=re.S):
            out += [(endpoint, line) for line in block.splitlines() if line.strip()]
    return out


@pytest.mark.parametrize(("endpoint", "line"), client_examples())
def test_every_client_example_in_the_protocol_doc_parses(endpoint: str, line: str) -> None:
    frames = p.VISITOR_FRAMES if endpoint == "visitor" else p.AGENT_FRAMES
    frame = p.parse_client_frame(line, frames)
    assert frame.type == json.loads(line)["type"]  # type: ignore[attr-defined]


def test_every_error_code_is_documented() -> None:
    text = DOC.read_text()
    for code in ErrorCode:
        assert f"| `{code.value}` |" in text, code


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{", ErrorCode.BAD_JSON),
        ('"hello"', ErrorCode.BAD_JSON),
        ('{"type":"ping"}', ErrorCode.UNSUPPORTED_VERSION),
        ('{"v":1,"type":"dance"}', ErrorCode.UNKNOWN_TYPE),
        ('{"v":1,"type":"transfer","conversation":"c_0123456789abcdef"}', ErrorCode.INVALID_FRAME),
        (
            '{"v":1,"type":"transfer","conversation":"c_0123456789abcdef","to_agent":"a","to_team":"b"}',
            ErrorCode.INVALID_FRAME,
        ),
        ('{"v":1,"type":"status","status":"online","capacity":0}', ErrorCode.INVALID_FRAME),
        (
            '{"v":1,"type":"hello","token":"t","resume":{"c_0123456789abcdef":"x"}}',
            ErrorCode.INVALID_FRAME,
        ),
    ],
)
def test_bad_frames_raise_their_code(raw: str, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as err:
        p.parse_client_frame(raw, p.AGENT_FRAMES)
    assert err.value.code == code


def test_seq_order_is_numeric() -> None:
    assert p.seq_key("99-0") < p.seq_key("100-0") < p.seq_key("100-1")


SECRET = "s" * 40


@pytest.mark.parametrize(
    ("token", "now", "code"),
    [
        (sign(SECRET, {"k": "visitor", "sub": "v", "exp": 100}), 99, None),
        (sign(SECRET, {"k": "visitor", "sub": "v", "exp": 100}), 100, ErrorCode.TOKEN_EXPIRED),
        (sign("t" * 40, {"k": "visitor", "sub": "v", "exp": 100}), 0, ErrorCode.TOKEN_INVALID),
        (sign(SECRET, {"k": "session", "sub": "v", "exp": 100}), 0, ErrorCode.TOKEN_INVALID),
        (sign(SECRET, {"k": "visitor", "sub": "v", "exp": 100}) + "x", 0, ErrorCode.TOKEN_INVALID),
        ("no-dot", 0, ErrorCode.TOKEN_INVALID),
    ],
)
def test_token_verification(token: str, now: float, code: ErrorCode | None) -> None:
    if code is None:
        assert verify(SECRET, token, "visitor", now).sub == "v"
    else:
        with pytest.raises(ProtocolError) as err:
            verify(SECRET, token, "visitor", now)
        assert err.value.code == code


def test_user_hash_is_hex_hmac_sha256() -> None:
    import hashlib
    import hmac

    assert user_hash("key", "42") == hmac.new(b"key", b"42", hashlib.sha256).hexdigest()
    assert len(user_hash("key", "42")) == 64 and user_hash("key", "42") != user_hash("key", "43")


def test_token_bucket_refills_with_time() -> None:
    bucket = TokenBucket(rate=2, burst=2, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert bucket.take(10.0) and bucket.take(10.0) and not bucket.take(10.0)


@pytest.mark.parametrize(
    ("origins", "origin", "allowed"),
    [
        (["https://acme.example"], "https://acme.example", True),
        (["https://acme.example"], "https://acme.example.evil", False),
        (["http://localhost:*"], "http://localhost:5173", True),
        (["http://localhost:*"], "http://localhost.evil:80", False),
        (["self"], "http://chat.example:8000", True),
        (["self"], "http://other.example:8000", False),
        (["https://acme.example"], None, True),
        ([], "https://acme.example", False),
    ],
)
def test_origin_allowed(origins: list[str], origin: str | None, allowed: bool) -> None:
    assert origin_allowed(Site(origins=origins), origin, "chat.example:8000") is allowed
