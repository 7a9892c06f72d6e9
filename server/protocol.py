"""Protocol v1: every frame of docs/protocol.md, modelled once.

Pure data and parsing: no I/O. Client frames are validated strictly (unknown
fields are rejected); server frames are built from the models and serialised
with :func:`dump`. To add a frame type (``draft``, ``coach``, ``script``,
``whisper`` …), define its model and add it to ``VISITOR_FRAMES`` /
``AGENT_FRAMES`` (client → server) or just build it (server → client).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from server.errors import ErrorCode, ProtocolError

VERSION = 1

ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
SEQ_RE = re.compile(r"^\d{1,20}-\d{1,20}$")
CONV_ID_PATTERN = r"^c_[0-9a-f]{16}$"

ClientId = Annotated[str, Field(pattern=ID_PATTERN)]
ConvId = Annotated[str, Field(pattern=CONV_ID_PATTERN)]
Lang = Literal["en", "sr", "hr", "sl"]
LANGS: tuple[str, ...] = ("en", "sr", "hr", "sl")


def seq_key(seq: str) -> tuple[int, int]:
    """Order of two stream ids: compare ``seq_key(a) < seq_key(b)``."""
    ms, _, n = seq.partition("-")
    return int(ms), int(n or 0)


# Redis stream ids are two unsigned 64-bit integers; a cursor is read from after it.
SEQ_PART_MAX = 2**64 - 2


def _check_seq(value: str) -> str:
    if not SEQ_RE.match(value):
        raise ValueError("seq must look like '<ms>-<n>'")
    ms, _, n = value.partition("-")
    if int(ms) > SEQ_PART_MAX or int(n) > SEQ_PART_MAX:
        raise ValueError("seq is out of range")
    return value


Seq = Annotated[str, Field(max_length=41)]


# ---------------------------------------------------------------- client frames


class ClientFrame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    id: str | None = Field(default=None, max_length=64)


class Hello(ClientFrame):
    type: Literal["hello"]
    token: str = Field(min_length=1, max_length=2048)
    resume: dict[str, Seq] = Field(default_factory=dict, max_length=100)

    @field_validator("resume")
    @classmethod
    def _cursors(cls, value: dict[str, str]) -> dict[str, str]:
        for conv, seq in value.items():
            if not re.match(CONV_ID_PATTERN, conv):
                raise ValueError(f"bad conversation id in resume: {conv[:40]!r}")
            _check_seq(seq)
        return value


class Message(ClientFrame):
    type: Literal["message"]
    id: ClientId
    text: str = Field(min_length=1)
    conversation: ConvId | None = None
    # Coaching (docs/coaching.md): send a message the coach refused; the draft it came from.
    override: bool = False
    draft_id: int | None = Field(default=None, ge=0)


class Typing(ClientFrame):
    type: Literal["typing"]
    conversation: ConvId | None = None
    active: bool = True


class Read(ClientFrame):
    type: Literal["read"]
    conversation: ConvId | None = None
    seq: Seq

    @field_validator("seq")
    @classmethod
    def _seq(cls, value: str) -> str:
        return _check_seq(value)


class Close(ClientFrame):
    type: Literal["close"]
    conversation: ConvId | None = None


class Ping(ClientFrame):
    type: Literal["ping"]


class LeaveMessage(ClientFrame):
    type: Literal["leave_message"]
    id: ClientId
    name: str = Field(min_length=1, max_length=100)
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    text: str = Field(min_length=1)


class Status(ClientFrame):
    type: Literal["status"]
    status: Literal["online", "away", "offline"]
    capacity: int | None = Field(default=None, ge=1, le=20)
    languages: list[Lang] | None = Field(default=None, min_length=1, max_length=4)


class Accept(ClientFrame):
    type: Literal["accept"]
    conversation: ConvId | None = None


class Transfer(ClientFrame):
    type: Literal["transfer"]
    conversation: ConvId
    to_agent: str | None = Field(default=None, min_length=1, max_length=64)
    to_team: str | None = Field(default=None, min_length=1, max_length=64)
    note: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _one_target(self) -> Transfer:
        if (self.to_agent is None) == (self.to_team is None):
            raise ValueError("give exactly one of to_agent and to_team")
        return self


# Coaching and supervision (docs/coaching.md).


class Draft(ClientFrame):
    type: Literal["draft"]
    conversation: ConvId
    draft_id: int = Field(ge=0)
    text: str = Field(max_length=4000)


class Whisper(ClientFrame):
    type: Literal["whisper"]
    conversation: ConvId
    text: str = Field(min_length=1, max_length=2000)


class Watch(ClientFrame):
    type: Literal["watch"]
    conversation: ConvId
    resume: Seq | None = None

    @field_validator("resume")
    @classmethod
    def _seq(cls, value: str | None) -> str | None:
        return value if value is None else _check_seq(value)


class Unwatch(ClientFrame):
    type: Literal["unwatch"]
    conversation: ConvId


class TakeOver(ClientFrame):
    type: Literal["take_over"]
    conversation: ConvId
    note: str = Field(default="", max_length=1000)


class Csat(ClientFrame):
    """The visitor's rating of a closed chat."""

    type: Literal["csat"]
    conversation: ConvId | None = None
    score: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=1000)


# The frames each endpoint accepts, by type. One place to extend the protocol.
COMMON_FRAMES: tuple[type[ClientFrame], ...] = (Hello, Message, Typing, Read, Close, Ping)


def _by_type(*models: type[ClientFrame]) -> dict[str, type[ClientFrame]]:
    """Frame models by the literal of their ``type`` field."""
    out: dict[str, type[ClientFrame]] = {}
    for model in models:
        annotation: Any = model.model_fields["type"].annotation
        out[annotation.__args__[0]] = model
    return out


VISITOR_FRAMES = _by_type(*COMMON_FRAMES, LeaveMessage, Csat)
AGENT_FRAMES = _by_type(
    *COMMON_FRAMES, Status, Accept, Transfer, Draft, Whisper, Watch, Unwatch, TakeOver
)


def parse_client_frame(raw: str | bytes, frames: dict[str, type[ClientFrame]]) -> ClientFrame:
    """Parse one client frame or raise :class:`ProtocolError` with its code and ``ref``."""
    if isinstance(raw, bytes):
        raise ProtocolError(ErrorCode.BAD_JSON, "binary frames are not supported")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.BAD_JSON, "frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, "frame must be a JSON object")
    ref = data.get("id") if isinstance(data.get("id"), str) else None
    if data.get("v") != VERSION:
        raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, "v must be 1", ref)
    kind = data.get("type")
    model = frames.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {str(kind)[:40]!r}", ref)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or kind
        raise ProtocolError(ErrorCode.INVALID_FRAME, f"{where}: {first['msg']}", ref) from None


# ---------------------------------------------------------------- server frames


class Party(BaseModel):
    """Who did something: ``{"role", "id", "name"}``."""

    role: Literal["visitor", "agent", "supervisor", "system"]
    id: str
    name: str


class AgentRef(BaseModel):
    id: str
    name: str


class VisitorRef(BaseModel):
    id: str
    name: str
    lang: str
    #: As the site's page gave it to ``Tactline.identify``; not verified by Tactline.
    email: str | None = None


class ServerFrame(BaseModel):
    v: Literal[1] = 1


class Event(ServerFrame):
    """A stored conversation event; ``seq`` is its Redis Stream id."""

    conversation: str
    seq: str = ""
    ts: int


class MessageEvent(Event):
    type: Literal["message"] = "message"
    id: str
    from_: Party = Field(alias="from", serialization_alias="from")
    text: str
    contact: dict[str, str] | None = None
    #: Agents and supervisors only: sent anyway, after the coach refused it.
    override: bool | None = None

    model_config = ConfigDict(populate_by_name=True)


class ReadEvent(Event):
    type: Literal["read"] = "read"
    by: Party
    up_to: str


class AssignedEvent(Event):
    type: Literal["assigned"] = "assigned"
    agent: AgentRef
    #: The conversation began as a message left for the next agent, who took it.
    left_message: bool = False


class TransferredEvent(Event):
    type: Literal["transferred"] = "transferred"
    from_agent: AgentRef | None = None
    agent: AgentRef | None = None
    team: str | None = None
    note: str | None = None
    #: A supervisor took the chat over (``take_over``); ``agent`` is the supervisor.
    taken_over: bool = False


class ClosedEvent(Event):
    type: Literal["closed"] = "closed"
    by: Party
    reason: Literal["closed", "timeout"] = "closed"


EVENT_TYPES = frozenset({"message", "read", "assigned", "transferred", "closed"})


class ConversationView(BaseModel):
    conversation: str
    status: Literal["queued", "assigned", "closed"]
    lang: str
    visitor: VisitorRef
    agent: AgentRef | None = None
    events: list[dict[str, Any]] = Field(default_factory=list)
    history_truncated: bool = False
    #: Agents and supervisors only: the supervisors' whispers in it, oldest first.
    whispers: list[dict[str, Any]] | None = None
    #: Agents and supervisors only: what the agent did with the coach's flags on each
    #: flagged message (message id -> applied, ignored or not_seen), as ``coach_checked``
    #: told them when it was sent.
    coached: dict[str, str] | None = None


class AgentSettings(BaseModel):
    """An agent's own status and capacity as the server holds them, online or not."""

    status: Literal["online", "away", "offline"]
    capacity: int


class Welcome(ServerFrame):
    type: Literal["welcome"] = "welcome"
    role: Literal["visitor", "agent", "supervisor"]
    user: AgentRef
    agents_online: int
    conversations: list[ConversationView]
    #: Agents only: their status and capacity, so that a console shows the capacity
    #: set while offline, which no queue snapshot lists.
    settings: AgentSettings | None = None


class Ack(ServerFrame):
    type: Literal["ack"] = "ack"
    ref: str
    conversation: str
    seq: str
    duplicate: bool = False


class TypingOut(ServerFrame):
    type: Literal["typing"] = "typing"
    conversation: str
    from_: Party = Field(alias="from", serialization_alias="from")
    active: bool

    model_config = ConfigDict(populate_by_name=True)


class QueueUpdate(ServerFrame):
    type: Literal["queue"] = "queue"
    conversation: str
    position: int
    estimated_wait_s: int | None
    #: Online agents who speak the conversation's language.
    agents_online: int


class AgentsOnline(ServerFrame):
    """To a visitor without an open conversation: who may chat with them changed."""

    type: Literal["agents"] = "agents"
    #: Online agents who speak the visitor's language, as in ``welcome``.
    agents_online: int


class Assignment(ServerFrame):
    type: Literal["assignment"] = "assignment"
    conversation: str
    reason: Literal["new", "accepted", "transfer", "requeue"]
    visitor: VisitorRef
    note: str | None = None
    from_agent: AgentRef | None = None
    events: list[dict[str, Any]] = Field(default_factory=list)


class QueueEntry(BaseModel):
    conversation: str
    lang: str
    position: int
    waiting_s: int
    team: str | None = None
    left_message: bool = False
    preview: str = ""
    #: Who is waiting, as agents will see them: the name they gave, or "Visitor 4F2A".
    visitor_name: str = ""


class AgentState(BaseModel):
    id: str
    name: str
    status: Literal["online", "away", "offline"]
    open: int
    capacity: int
    languages: list[str]


class QueueSnapshot(ServerFrame):
    type: Literal["queue_snapshot"] = "queue_snapshot"
    queue: list[QueueEntry]
    agents: list[AgentState]


class Pong(ServerFrame):
    type: Literal["pong"] = "pong"
    ref: str | None = None


class ErrorFrame(ServerFrame):
    type: Literal["error"] = "error"
    code: str
    message: str
    ref: str | None = None


def dump(frame: BaseModel) -> dict[str, Any]:
    """A server frame as the JSON object sent on the wire."""
    return frame.model_dump(mode="json", by_alias=True)


def encode(frame: BaseModel | dict[str, Any]) -> str:
    if isinstance(frame, BaseModel):
        return frame.model_dump_json(by_alias=True)
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def error_frame(err: ProtocolError) -> dict[str, Any]:
    frame = dump(ErrorFrame(code=err.code.value, message=err.message, ref=err.ref))
    frame.update(err.extra)
    return frame
