"""Error codes and close codes of protocol v1 (docs/protocol.md §7)."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any


class ErrorCode(StrEnum):
    BAD_JSON = "bad_json"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FRAME = "invalid_frame"
    HELLO_REQUIRED = "hello_required"
    ALREADY_AUTHENTICATED = "already_authenticated"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    TEXT_TOO_LONG = "text_too_long"
    NOT_IN_CONVERSATION = "not_in_conversation"
    NO_CONVERSATION = "no_conversation"
    CONVERSATION_CLOSED = "conversation_closed"
    NOT_QUEUED = "not_queued"
    QUEUE_EMPTY = "queue_empty"
    NO_CAPACITY = "no_capacity"
    AGENT_UNAVAILABLE = "agent_unavailable"
    UNKNOWN_TEAM = "unknown_team"
    AGENTS_ONLINE = "agents_online"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    SENSITIVE_DATA = "sensitive_data"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4001
    HELLO_TIMEOUT = 4002
    IDLE_TIMEOUT = 4004


class ProtocolError(Exception):
    """A client did something wrong; becomes an ``error`` frame, the connection stays open."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        ref: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"[{code.value}] {message}")
        self.code = code
        self.message = message
        self.ref = ref
        #: More fields for the error frame (the coach's flags of a refused message).
        self.extra = extra or {}


class ApiError(Exception):
    """An HTTP API error: status, code and a message for the client."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.status = status
        self.code = code
        self.message = message
