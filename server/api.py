"""HTTP API: tokens for visitors, login, and the REST read side (docs/protocol.md §8)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel, Field, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.accounts import (
    authenticate,
    end_session,
    list_accounts,
    login_allowed,
    session_account,
)
from server.errors import ApiError, ProtocolError
from server.protocol import LANGS, Lang
from server.relay import Relay, origin_allowed
from server.store import G, conv_key, now_ms, visitor_of
from server.tokens import Claims, check_user_hash, sign, verify

# Limits
MAX_BODY_BYTES = 8 * 1024
MAX_PAGE = 100
MAX_SCAN = 5000


class VisitorTokenRequest(BaseModel):
    site: str = Field(min_length=1, max_length=64)
    lang: Lang = "en"
    #: None for a visitor who gave no name; they are shown as "Visitor 4F2A" (visitor_name).
    name: str | None = Field(default=None, min_length=1, max_length=100)
    token: str | None = Field(default=None, max_length=2048)
    user_id: str | None = Field(default=None, min_length=1, max_length=128)
    user_hash: str | None = Field(default=None, max_length=128)
    #: Shown to the agent with the name; as the page says, not verified here.
    email: str | None = Field(default=None, max_length=254)

    @field_validator("name")
    @classmethod
    def _readable_name(cls, value: str | None) -> str | None:
        # Control characters and direction overrides could make what the agent reads
        # differ from what was typed; they go (a joiner in a Persian name stays).
        if value is None:
            return None
        cleaned = "".join(ch for ch in value if not _hidden(ch)).strip()
        return cleaned or None

    @field_validator("email")
    @classmethod
    def _plain_email(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
            raise ValueError("must not contain control or formatting characters")
        if not _EMAIL.match(value):
            raise ValueError("is not an email address (name@domain.tld)")
        return value


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _hidden(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" or ch in _DIRECTION_CONTROLS


#: Left-to-right and right-to-left marks, embeddings, overrides and isolates.
_DIRECTION_CONTROLS = frozenset(
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


class VisitorTokenResponse(BaseModel):
    token: str
    visitor_id: str
    site: str
    lang: str
    verified: bool
    expires_at: int


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserRef(BaseModel):
    id: str
    name: str


class LoginResponse(BaseModel):
    token: str
    role: str
    user: UserRef
    expires_at: int


class LoggedOut(BaseModel):
    ok: bool = True


class ConversationSummary(BaseModel):
    conversation: str
    status: str
    lang: str
    site: str
    visitor: dict[str, str]
    agent: str | None
    created: int
    closed_at: int | None
    last_seq: str | None
    preview: str


class ConversationPage(BaseModel):
    items: list[ConversationSummary]
    next_cursor: str | None


class Transcript(BaseModel):
    conversation: ConversationSummary
    events: list[dict[str, Any]]


class AgentInfo(BaseModel):
    id: str
    name: str
    role: str
    #: online, away, offline, or disconnected: gone with chats held until ``held_until``.
    status: str
    #: While disconnected: when the reconnect grace period ends and the chats go back to
    #: the queue (ms).
    held_until: int | None = None
    open: int
    capacity: int
    languages: list[str]
    #: The teams a ``transfer`` with ``to_team`` may name (those of agent accounts).
    teams: list[str]


class AgentList(BaseModel):
    items: list[AgentInfo]


class HttpError(BaseModel):
    code: str
    message: str


@dataclass(frozen=True)
class Presence:
    """An agent as a supervisor should see them now."""

    status: str  # online | away | offline | disconnected
    held_until: int | None = None  # disconnected: when the held chats go back to the queue (ms)


def presence(
    chosen: str | None, connected: bool, grace_ends: int | None, now: int, grace_ms: int
) -> Presence:
    """What the agent chose (``chosen``: online, away, offline) as it stands: an agent who
    chose to be reachable but has no connection left is ``disconnected`` until their grace
    period ends (``grace_ends``, or ``grace_ms`` from now when the sweep has not noted it
    yet), and ``offline`` after it."""
    if chosen not in ("online", "away"):
        return Presence("offline")
    if connected:
        return Presence(chosen)
    if grace_ends is None:
        return Presence("disconnected", now + grace_ms)
    if grace_ends > now:
        return Presence("disconnected", grace_ends)
    return Presence("offline")  # the grace is over: the sweep is giving the chats back


async def presence_of(relay: Relay, agents: Iterable[str]) -> dict[str, Presence]:
    """The presence of each agent id, read in one round trip (server/store.py keeps the
    agents' connections in ``{tl}:presence`` and their grace periods in ``{tl}:grace``)."""
    wanted = sorted({a for a in agents if a})
    if not wanted:
        return {}
    now = now_ms()
    pipe = relay.redis.pipeline(transaction=False)
    pipe.zrangebyscore(f"{G}presence", f"({now}", "+inf")
    for agent in wanted:
        pipe.hget(f"{G}agent:{agent}", "status")
        pipe.zscore(f"{G}grace", agent)
    res = await pipe.execute()
    connected = {str(member).split(" ", 1)[0] for member in res[0]}
    grace_ms = int(relay.settings.grace_period_s * 1000)
    out = {}
    for i, agent in enumerate(wanted):
        chosen, grace_ends = res[1 + 2 * i], res[2 + 2 * i]
        out[agent] = presence(
            chosen,
            agent in connected,
            None if grace_ends is None else int(grace_ends),
            now,
            grace_ms,
        )
    return out


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _json(request: Request, model: type[BaseModel]) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "invalid_request", "body too large")
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise ApiError(400, "invalid_request", f"{where}: {first['msg']}") from None


def _relay(request: Request) -> Relay:
    relay: Relay = request.app.state.relay
    return relay


def _cors(request: Request) -> dict[str, str]:
    """CORS headers for a page of an origin that some site allows (the widget on a
    customer's website asks for its token cross-origin)."""
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if not origin or not any(
        origin_allowed(site, origin, host) for site in _relay(request).sites.values()
    ):
        return {"Vary": "Origin"}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


async def create_visitor_token(request: Request) -> Response:
    relay = _relay(request)
    if request.method == "OPTIONS":  # preflight, for clients that send application/json
        headers = _cors(request)
        if "Access-Control-Allow-Origin" in headers:
            headers |= {
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600",
            }
        return Response(status_code=204, headers=headers)
    req: VisitorTokenRequest = await _json(request, VisitorTokenRequest)
    site = relay.sites.get(req.site)
    if site is None:
        raise ApiError(404, "unknown_site", f"no site {req.site!r}")
    if not origin_allowed(site, request.headers.get("origin"), request.headers.get("host")):
        raise ApiError(403, "origin_forbidden", "this origin may not use the site")
    now = time.time()
    verified = False
    visitor_id = ""
    if req.user_id is not None:
        if (
            not site.secret
            or not req.user_hash
            or not check_user_hash(site.secret, req.user_id, req.user_hash)
        ):
            raise ApiError(403, "identity_invalid", "user_hash does not match user_id")
        digest = hashlib.sha256(f"{req.site}\0{req.user_id}".encode()).hexdigest()[:24]
        visitor_id, verified = f"u_{digest}", True
    elif req.token:
        try:
            prev = verify(relay.secret, req.token, "visitor", now, allow_expired=True)
            if prev.data.get("site") == req.site and not prev.data.get("verified"):
                visitor_id = prev.sub
        except ProtocolError:
            pass
    if not visitor_id:
        # A new visitor is a new per-person frame budget: minting one costs the
        # client's address as much as a frame, so reconnecting with a new token
        # each time does not get around the limits.
        if not relay.ip_buckets.take(client_ip(request), asyncio.get_running_loop().time()):
            raise ApiError(429, "rate_limited", "too many new visitors from this address")
        visitor_id = "v_" + secrets.token_hex(12)
    exp = int(now) + relay.settings.visitor_token_ttl_s
    token = sign(
        relay.secret,
        {
            "k": "visitor",
            "sub": visitor_id,
            "site": req.site,
            "lang": req.lang,
            **({"name": req.name} if req.name else {}),
            **({"email": req.email} if req.email else {}),
            "verified": verified,
            "exp": exp,
        },
    )
    return JSONResponse(
        VisitorTokenResponse(
            token=token,
            visitor_id=visitor_id,
            site=req.site,
            lang=req.lang,
            verified=verified,
            expires_at=exp,
        ).model_dump(),
        headers=_cors(request),
    )


async def login(request: Request) -> JSONResponse:
    relay = _relay(request)
    req: LoginRequest = await _json(request, LoginRequest)
    keys = [f"user:{req.username.lower()}", f"ip:{client_ip(request)}"]
    if not await login_allowed(relay.redis, keys, relay.settings.login_attempts_per_min):
        raise ApiError(429, "rate_limited", "too many login attempts; wait a minute")
    account = await authenticate(relay.redis, req.username, req.password)
    if account is None:
        raise ApiError(401, "login_failed", "wrong user name or password")
    exp = int(time.time()) + relay.settings.session_ttl_s
    # `sid` names this session, so that logging out ends it alone.
    claims = {
        "k": "session",
        "sub": account.name,
        "role": account.role,
        "exp": exp,
        "sid": secrets.token_urlsafe(12),
    }
    token = sign(relay.secret, claims)
    return JSONResponse(
        LoginResponse(
            token=token,
            role=account.role,
            user=UserRef(id=account.name, name=account.display_name),
            expires_at=exp,
        ).model_dump()
    )


def _session(request: Request) -> Claims:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <session token>")
    try:
        return verify(_relay(request).secret, header[7:].strip(), "session", time.time())
    except ProtocolError as err:
        raise ApiError(401, "unauthorized", err.message) from None


async def _caller(request: Request) -> tuple[str, str]:
    account = await session_account(_relay(request).redis, _session(request))
    if account is None:
        raise ApiError(401, "unauthorized", "the session has ended or the account is gone")
    return account.name, account.role


async def logout(request: Request) -> JSONResponse:
    """End the caller's session: its token is refused from now on, everywhere."""
    claims = _session(request)
    await end_session(_relay(request).redis, claims)
    return JSONResponse(LoggedOut().model_dump())


def _summary(st: dict[str, str]) -> ConversationSummary:
    return ConversationSummary(
        conversation=st["id"],
        status=st.get("status", "queued"),
        lang=st.get("lang", "en"),
        site=st.get("site", ""),
        visitor=visitor_of(st),
        agent=st.get("agent") or None,
        created=int(st.get("created") or 0),
        closed_at=int(st["closed_at"]) if st.get("closed_at") else None,
        last_seq=st.get("last_seq") or None,
        preview=st.get("preview", ""),
    )


async def list_conversations(request: Request) -> JSONResponse:
    relay = _relay(request)
    uid, role = await _caller(request)
    q = request.query_params
    try:
        limit = min(MAX_PAGE, max(1, int(q.get("limit", "20"))))
        offset = int(q.get("cursor", "0"))
    except ValueError:
        raise ApiError(400, "invalid_request", "limit and cursor are integers") from None
    status, agent, lang = q.get("status"), q.get("agent"), q.get("lang")
    if status and status not in ("queued", "assigned", "closed"):
        raise ApiError(400, "invalid_request", "status: queued, assigned or closed")
    if lang and lang not in LANGS:
        raise ApiError(400, "invalid_request", f"lang: one of {', '.join(LANGS)}")
    if role == "agent":
        if agent and agent != uid:
            raise ApiError(403, "forbidden", "agents see only their own conversations")
        index = f"{G}ahist:{uid}"
    else:
        index = f"{G}ahist:{agent}" if agent else f"{G}convs"
    items: list[ConversationSummary] = []
    pos = offset
    scanned = 0
    while len(items) < limit and scanned < MAX_SCAN:
        ids = cast(list[str], await relay.redis.zrevrange(index, pos, pos + 99))
        if not ids:
            pos = -1
            break
        pipe = relay.redis.pipeline(transaction=False)
        for conv in ids:
            pipe.hgetall(conv_key(conv, "state"))
        for i, st in enumerate(await pipe.execute()):
            scanned += 1
            if not st:
                continue
            if (
                role == "agent"
                and st.get("agent") != uid
                and not await relay.store.assigned_since(uid, st["id"])
            ):
                continue
            if (
                (status and st.get("status") != status)
                or (lang and st.get("lang") != lang)
                or (
                    agent
                    and role == "supervisor"
                    and st.get("agent") != agent
                    and index == f"{G}convs"
                )
            ):
                continue
            items.append(_summary(st))
            if len(items) == limit:
                pos = pos + i + 1
                break
        else:
            pos += len(ids)
    next_cursor = str(pos) if pos >= 0 and len(items) == limit else None
    return JSONResponse(ConversationPage(items=items, next_cursor=next_cursor).model_dump())


async def get_conversation(request: Request) -> JSONResponse:
    relay = _relay(request)
    uid, role = await _caller(request)
    conv = request.path_params["conv"]
    st: dict[str, str] = {}
    if conv.startswith("c_"):
        st = cast(dict[str, str], await relay.redis.hgetall(conv_key(conv, "state")))
    if not st:
        raise ApiError(404, "not_found", "no such conversation")
    if role == "agent" and st.get("agent") != uid:
        raise ApiError(403, "forbidden", "this conversation is not assigned to you")
    events = await relay.store.events_after(conv, "0-0", 0)
    return JSONResponse(Transcript(conversation=_summary(st), events=events).model_dump())


async def list_agents(request: Request) -> JSONResponse:
    relay = _relay(request)
    await _caller(request)
    items = []
    accounts = await list_accounts(relay.redis)
    present = await presence_of(relay, (acc.name for acc in accounts))
    # The Live page asks every few seconds: every agent's hash and chats in one round trip.
    pipe = relay.redis.pipeline(transaction=False)
    for acc in accounts:
        pipe.hgetall(f"{G}agent:{acc.name}")
        pipe.scard(f"{G}aconvs:{acc.name}")
    rows = await pipe.execute() if accounts else []
    for i, acc in enumerate(accounts):
        h, open_n = rows[2 * i], rows[2 * i + 1]
        items.append(
            AgentInfo(
                id=acc.name,
                name=acc.display_name,
                role=acc.role,
                status=present[acc.name].status,
                held_until=present[acc.name].held_until,
                open=int(open_n),
                capacity=int(h.get("capacity") or relay.settings.default_capacity),
                languages=[x for x in h.get("langs", "").split(",") if x] or acc.languages,
                teams=acc.teams,
            )
        )
    return JSONResponse(AgentList(items=items).model_dump())


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _schema(model)}}}


def _responses(ok: type[BaseModel], *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": _schema(ok)}}}
    }
    for status in errors:
        out[str(status)] = {
            "description": "error",
            "content": {"application/json": {"schema": _schema(HttpError)}},
        }
    return out


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the HTTP API."""
    models: list[type[BaseModel]] = [
        VisitorTokenRequest,
        VisitorTokenResponse,
        LoginRequest,
        LoginResponse,
        LoggedOut,
        ConversationSummary,
        ConversationPage,
        Transcript,
        AgentInfo,
        AgentList,
        HttpError,
    ]
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    bearer: list[dict[str, list[str]]] = [{"session": []}]
    query = [
        {"name": "status", "in": "query", "schema": {"enum": ["queued", "assigned", "closed"]}},
        {"name": "agent", "in": "query", "schema": {"type": "string"}},
        {"name": "lang", "in": "query", "schema": {"enum": list(LANGS)}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
        },
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tactline",
            "version": "1",
            "description": "WebSocket protocol: docs/protocol.md",
        },
        "paths": {
            "/api/visitors": {
                "post": {
                    "summary": "A signed visitor token",
                    "operationId": "createVisitorToken",
                    "requestBody": _json_body(VisitorTokenRequest),
                    "responses": _responses(VisitorTokenResponse, 400, 403, 404, 429),
                }
            },
            "/api/login": {
                "post": {
                    "summary": "A session token for an agent or supervisor",
                    "operationId": "login",
                    "requestBody": _json_body(LoginRequest),
                    "responses": _responses(LoginResponse, 400, 401, 429),
                }
            },
            "/api/logout": {
                "post": {
                    "summary": "End this session: its token stops working",
                    "operationId": "logout",
                    "security": bearer,
                    "responses": _responses(LoggedOut, 401),
                }
            },
            "/api/conversations": {
                "get": {
                    "summary": "Conversations, newest first",
                    "operationId": "listConversations",
                    "security": bearer,
                    "parameters": query,
                    "responses": _responses(ConversationPage, 400, 401, 403),
                }
            },
            "/api/conversations/{conv}": {
                "get": {
                    "summary": "One conversation's transcript",
                    "operationId": "getConversation",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "conv",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": _responses(Transcript, 401, 403, 404),
                }
            },
            "/api/agents": {
                "get": {
                    "summary": "Agents and their status",
                    "operationId": "listAgents",
                    "security": bearer,
                    "responses": _responses(AgentList, 401),
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"session": {"type": "http", "scheme": "bearer"}},
        },
    }
