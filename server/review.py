"""Supervisor review: flagged conversations, transcripts, scorecards, exports,
false alarms and the rule-quality report (docs/coaching.md).

Every endpoint needs a supervisor session; agents get 403.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from coach.taxonomy import CUSTOMER_CATEGORIES
from server import false_alarms
from server.accounts import display_names
from server.api import Presence, _caller, _json, _relay, presence_of
from server.coaching import (
    FLAGGED,
    RULE_FIRES,
    conv_key,
    cue_excerpt,
    rule_fires_key,
    score_key,
)
from server.errors import ApiError
from server.store import G, decode_event, now_ms, visitor_of

# Limits
MAX_PAGE = 100
MAX_SCAN = 5000
MAX_DAYS = 366
MAX_EXPORT = 1000
WAIT_SCAN = 50  # events read back per live conversation to find the unanswered messages
LOG_SCAN = 200  # coaching records read back per live conversation to find its last cue
PREVIEW_CHARS = 80  # of the customer's first message, in the list (as the queue's preview)

SEVERITY_RANK = {"info": 0, "warning": 1, "alert": 2}


class FlagReview(BaseModel):
    status: str = Field(pattern=r"^(false_alarm|reviewed)$")
    note: str = Field(default="", max_length=2000)


async def _supervisor(request: Request) -> str:
    uid, role = await _caller(request)
    if role != "supervisor":
        raise ApiError(403, "forbidden", "supervisors only")
    return uid


def _date_ms(value: str | None, name: str, default: int) -> int:
    if not value:
        return default
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "invalid_request", f"{name}: a date like 2026-11-23") from None
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _bool(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, "invalid_request", f"{name}: true or false")


def _int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise ApiError(400, "invalid_request", f"{name}: an integer") from None
    if not low <= n <= high:
        raise ApiError(400, "invalid_request", f"{name}: between {low} and {high}")
    return n


async def _flags(request: Request, conv: str) -> list[dict[str, Any]]:
    raw = await _relay(request).redis.hvals(conv_key(conv, "flags"))
    flags = [json.loads(r) for r in raw]
    flags.sort(key=lambda f: (f.get("seq", ""), f.get("start", 0)))
    return flags


def _open(flag: dict[str, Any]) -> bool:
    """Whether a flag is still worth a supervisor's look: the agent did not apply its
    suggestion and no supervisor has marked it."""
    return flag.get("outcome") != "applied" and not (flag.get("review") or {}).get("status")


def _summary(st: dict[str, str], flags: list[dict[str, Any]]) -> dict[str, Any]:
    """One conversation for the list. ``flags.total`` counts every flag (as the transcript
    lists them), ``count`` those the agent did not apply, ``open`` those still to review."""
    fired = [f for f in flags if f.get("outcome") != "applied"]
    worst = max((f["severity"] for f in fired), key=lambda s: SEVERITY_RANK[s], default=None)
    return {
        "conversation": st.get("id"),
        "agent": st.get("agent") or None,
        "visitor": visitor_of(st),
        "lang": st.get("lang", ""),
        "site": st.get("site", ""),
        "status": st.get("status", ""),
        "started_at": int(st.get("created") or 0),
        "closed_at": int(st["closed_at"]) if st.get("closed_at") else None,
        "csat": int(st["csat"]) if st.get("csat") else None,
        "flags": {
            "total": len(flags),
            "count": len(fired),
            "open": sum(1 for f in flags if _open(f)),
            "worst": worst,
            "categories": sorted({f["category"] for f in flags}),
            "ignored": sum(1 for f in fired if f.get("outcome") == "ignored"),
            "applied": sum(1 for f in flags if f.get("outcome") == "applied"),
        },
    }


async def _filtered(request: Request) -> list[dict[str, Any]]:
    """Conversations matching the query filters, most severe and most flagged first."""
    relay = _relay(request)
    q = request.query_params
    now = now_ms()
    start = _date_ms(q.get("from"), "from", 0)
    end = _date_ms(q.get("to"), "to", now) + (86_400_000 if q.get("to") else 1)
    has_flags = _bool(q.get("has_flags"), "has_flags")
    ignored = _bool(q.get("flag_ignored"), "flag_ignored")
    csat = _int(q.get("csat"), "csat", 0, 0, 5) or None
    severity = q.get("severity")
    if severity and severity not in SEVERITY_RANK:
        raise ApiError(400, "invalid_request", "severity: info, warning or alert")
    category = q.get("category") or None
    cue = category in CUSTOMER_CATEGORIES
    needs_flags = has_flags or ignored or severity or (category and not cue)
    index = FLAGGED if needs_flags else f"{G}convs"
    # Flagged conversations are scored by their last flag, others by their start;
    # either way the start is checked below.
    low, high = (start, f"({end}") if index != FLAGGED else (start, "+inf")
    ids = cast(
        list[str],
        await relay.redis.zrevrangebyscore(index, high, low, start=0, num=MAX_SCAN),
    )
    agent = q.get("agent")
    pipe = relay.redis.pipeline(transaction=False)
    for conv in ids:
        pipe.hgetall(conv_key(conv, "state"))
        pipe.hvals(conv_key(conv, "flags"))
        if cue:
            pipe.lrange(conv_key(conv, "coachlog"), 0, -1)
    if agent and ids:
        # Every chat the account was given: routed, accepted, transferred to, taken over.
        pipe.zmscore(f"{G}ahist:{agent}", ids)
    results = await pipe.execute()
    held = results[-1] if agent and ids else []
    out = []
    per = 3 if cue else 2
    for i, conv in enumerate(ids):
        st, raw_flags = results[per * i], results[per * i + 1]
        if not st:
            continue
        st.setdefault("id", conv)
        created = int(st.get("created") or 0)
        if not start <= created < end:
            continue
        flags = [json.loads(r) for r in raw_flags]
        summary = _summary(st, flags)
        if agent and summary["agent"] != agent and held[i] is None:
            continue
        if q.get("lang") and summary["lang"] != q["lang"]:
            continue
        if q.get("site") and summary["site"] != q["site"]:
            continue
        if csat is not None and summary["csat"] != csat:
            continue
        if cue and category not in _cue_categories(results[per * i + 2]):
            continue
        if category and not cue and category not in summary["flags"]["categories"]:
            continue
        if severity and (
            summary["flags"]["worst"] is None
            or SEVERITY_RANK[summary["flags"]["worst"]] < SEVERITY_RANK[severity]
        ):
            continue
        if has_flags is not None and (summary["flags"]["count"] > 0) != has_flags:
            continue
        if ignored is not None and (summary["flags"]["ignored"] > 0) != ignored:
            continue
        out.append(summary)
    out.sort(
        key=lambda s: (
            -SEVERITY_RANK.get(s["flags"]["worst"] or "", -1),
            -s["flags"]["count"],
            -s["started_at"],
        )
    )
    return out


def _cue_categories(log: list[str]) -> list[str]:
    """The categories of the customer cues among coaching records."""
    return sorted({r.get("category") for r in map(json.loads, log) if r.get("kind") == "cue"})


async def _names(request: Request, uids: Iterable[str | None]) -> dict[str, str]:
    """Display names of account ids as they are now (a renamed agent shows the new name at
    once, in every process): an id's name is ``names.get(id)``, None for no agent."""
    return await display_names(_relay(request).redis, (u for u in uids if u))


def _agents_of(events: list[dict[str, Any]], holder: str | None) -> list[str]:
    """The accounts that held a conversation, in the order they held it, ending with the
    one who holds (or held) it last: "Jelena, Ana, Jelena" for a chat taken over and
    handed back. An account that wrote without holding it is listed where it first wrote;
    ``holder``, the one holding it now, ends the list if no event names them last."""
    # A chain, not a set of first appearances: a hand-back to an earlier agent must show
    # them again at the end, or the list reads as if the last to take it still had it.
    chain: list[str] = []

    def held(uid: str) -> None:
        if not chain or chain[-1] != uid:
            chain.append(uid)

    for e in events:
        kind = e.get("type")
        if kind in ("assigned", "transferred"):
            gone, to = e.get("from_agent") or {}, e.get("agent") or {}
            if gone.get("id") and not chain:
                chain.append(gone["id"])
            if to.get("id"):
                held(to["id"])
        elif kind == "message":
            sender = e.get("from") or {}
            uid = sender.get("id")
            if sender.get("role") in ("agent", "supervisor") and uid and uid not in chain:
                chain.append(uid)
    if holder:
        held(holder)
    return chain


def _credit(flags: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    """Name on each flag the account that sent the flagged message: as stored with the
    flag, or for a flag stored without it, the sender of the message it was raised on."""
    senders = {
        e.get("seq"): (e.get("from") or {}).get("id") for e in events if e.get("type") == "message"
    }
    for f in flags:
        f["agent"] = f.get("agent") or senders.get(f.get("seq")) or None


async def _details(request: Request, items: list[dict[str, Any]]) -> None:
    """Add to list items ``agents`` (``[{id, name}]``, see ``_agents_of``), ``agent_name``,
    ``cues``, the categories of the customer cues, and ``preview``, the start of the
    customer's first message ("" before one)."""
    pipe = _relay(request).redis.pipeline(transaction=False)
    for item in items:
        pipe.xrange(conv_key(item["conversation"], "events"))
        pipe.lrange(conv_key(item["conversation"], "coachlog"), 0, -1)
    read = await pipe.execute()
    events = [[decode_event(seq, fields["e"]) for seq, fields in entries] for entries in read[0::2]]
    taking_part = [_agents_of(evs, item["agent"]) for item, evs in zip(items, events, strict=True)]
    names = await _names(request, (a for ids in taking_part for a in ids))
    for item, evs, ids, log in zip(items, events, taking_part, read[1::2], strict=True):
        first = next((e for e in evs if _from_visitor(e)), None)
        item["preview"] = str(first.get("text", ""))[:PREVIEW_CHARS] if first else ""
        item["agent_name"] = names.get(item["agent"] or "")
        item["agents"] = [{"id": a, "name": names.get(a, a)} for a in ids]
        item["cues"] = _cue_categories(log)


def _from_visitor(e: dict[str, Any]) -> bool:
    return e.get("type") == "message" and (e.get("from") or {}).get("role") == "visitor"


async def list_flagged(request: Request) -> JSONResponse:
    await _supervisor(request)
    q = request.query_params
    page = _int(q.get("page"), "page", 1, 1, 10_000)
    per_page = _int(q.get("per_page"), "per_page", 20, 1, MAX_PAGE)
    items = await _filtered(request)
    chunk = items[(page - 1) * per_page : page * per_page]
    await _details(request, chunk)
    return JSONResponse({"items": chunk, "page": page, "per_page": per_page, "total": len(items)})


async def _transcript(request: Request, conv: str) -> dict[str, Any]:
    relay = _relay(request)
    st = cast(dict[str, str], await relay.redis.hgetall(conv_key(conv, "state")))
    if not st:
        raise ApiError(404, "not_found", f"no conversation {conv}")
    st.setdefault("id", conv)
    entries = cast(
        list[tuple[str, dict[str, str]]], await relay.redis.xrange(conv_key(conv, "events"))
    )
    events = [decode_event(seq, fields["e"]) for seq, fields in entries]
    flags = await _flags(request, conv)
    log = [json.loads(r) for r in await relay.redis.lrange(conv_key(conv, "coachlog"), 0, -1)]
    timeline = [
        {"ts": e.get("ts"), "type": e.get("type"), "seq": e.get("seq")}
        for e in events
        if e.get("type") in ("assigned", "transferred", "closed")
    ]
    timeline += [
        {"ts": r.get("ts"), "type": r.get("category") or r.get("kind"), "waited": r.get("waited")}
        for r in log
        if r.get("kind") == "nudge"
    ]
    timeline.sort(key=lambda t: t.get("ts") or 0)
    summary = _summary(st, flags)
    _credit(flags, events)
    taking_part = _agents_of(events, summary["agent"])
    names = await _names(request, taking_part + [f["agent"] for f in flags])
    for f in flags:
        f["agent_name"] = names.get(f["agent"] or "")
    return {
        **summary,
        "agent_name": names.get(summary["agent"] or ""),
        "agents": [{"id": a, "name": names.get(a, a)} for a in taking_part],
        "events": events,
        "flags": flags,
        "cues": [r for r in log if r.get("kind") == "cue"],
        "scripts": [r for r in log if r.get("kind") == "script"],
        "nudges": [r for r in log if r.get("kind") == "nudge"],
        "whispers": [r for r in log if r.get("kind") == "whisper"],
        "overrides": [r for r in log if r.get("kind") == "override"],
        "timeline": timeline,
        "csat_comment": st.get("csat_comment") or None,
    }


async def get_transcript(request: Request) -> JSONResponse:
    await _supervisor(request)
    return JSONResponse(await _transcript(request, request.path_params["conv"]))


def _iso(ts: int | None) -> str:
    """A time in ms as ISO 8601 in UTC, to the millisecond: ``2026-11-23T10:04:05.120Z``."""
    if not ts:
        return ""
    return datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _move(e: dict[str, Any]) -> dict[str, str] | None:
    """Who an ``assigned`` or ``transferred`` event gave the chat to, and from whom, in the
    words and columns of the exports; None for any other event."""
    if e.get("type") not in ("assigned", "transferred"):
        return None
    gone = e.get("from_agent") or {}
    to = e.get("agent") or {}
    if e["type"] == "assigned":
        event = "assigned"
    elif e.get("taken_over"):
        event = "taken_over"
    elif not to and not e.get("team"):
        # Handed to no one: its agent went offline, and it waited for the next.
        event = "back_in_queue"
    else:
        event = "transferred"
    return {
        "event": event,
        "event_from": gone.get("id") or "",
        "event_from_name": gone.get("name") or "",
        "event_to": to.get("id") or "",
        "event_to_name": to.get("name") or "",
        "event_team": e.get("team") or "",
        "note": e.get("note") or "",
    }


def _move_words(m: dict[str, str]) -> str:
    """A move of the chat as the text export says it: ``transferred from Jelena to Marko,
    note: 'Wants a refund'``."""
    gone = m["event_from_name"] or m["event_from"]
    to = (
        m["event_to_name"]
        or m["event_to"]
        or (f"team {m['event_team']}" if m["event_team"] else "-")
    )
    if m["event"] == "assigned":
        said = f"assigned to {to}"
    elif m["event"] == "taken_over":
        said = f"{to} (supervisor) took the chat over" + (f" from {gone}" if gone else "")
    elif m["event"] == "back_in_queue":
        said = "back in the queue" + (f" ({gone} went offline)" if gone else "")
    else:
        said = "transferred" + (f" from {gone}" if gone else "") + f" to {to}"
    return said + (f", note: {m['note']!r}" if m["note"] else "")


def _as_text(t: dict[str, Any]) -> str:
    agents = " -> ".join(a["name"] for a in t["agents"]) or "-"
    lines = [f"Conversation {t['conversation']} ({t['lang']}, agents {agents})"]
    if t["csat"] is not None:
        comment = t["csat_comment"]
        lines.append(
            f"CSAT {t['csat']}" + (f", the customer's comment: {comment!r}" if comment else "")
        )
    flags_by_seq: dict[str, list[dict[str, Any]]] = {}
    for f in t["flags"]:
        flags_by_seq.setdefault(f.get("seq", ""), []).append(f)
    # Whispers go between the events by time; an event and a whisper of one millisecond,
    # the event first.
    said = [(e.get("ts") or 0, 0, e) for e in t["events"]]
    said += [(w.get("ts") or 0, 1, {**w, "type": "whisper"}) for w in t["whispers"]]
    said.sort(key=lambda x: (x[0], x[1]))
    for ts, _, e in said:
        when = datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        if e.get("type") == "message":
            who = e.get("from", {})
            lines.append(f"[{when}] {who.get('name') or who.get('role')}: {e.get('text', '')}")
            for f in flags_by_seq.get(e.get("seq", ""), []):
                lines.append(
                    f"    ! {f['severity']} {f['category']} {f['text']!r}"
                    f" ({f['agent_name'] or f['agent'] or '-'}: {f['outcome']})"
                    + (f" -> {f['suggestions'][0]!r}" if f.get("suggestions") else "")
                )
        elif e.get("type") == "whisper":
            who = (e.get("from") or {}).get("name") or (e.get("from") or {}).get("id") or "-"
            lines.append(f"[{when}] (whisper, private to the agent) {who}: {e.get('text', '')}")
        elif e.get("type") == "read":
            # Receipts say when a screen showed the messages, a line each time the visitor
            # or the agent looked; a reader of the chat wants what was said and who held
            # it, so they stay in the JSON export only.
            continue
        elif e.get("type") == "closed":
            by = (e.get("by") or {}).get("name")
            if e.get("reason") == "timeout":  # closed by the server: nobody was there
                lines.append(f"[{when}] -- closed: the visitor had left")
            else:
                lines.append(f"[{when}] -- closed" + (f" by {by}" if by else ""))
        elif move := _move(e):
            lines.append(f"[{when}] -- {_move_words(move)}")
        else:
            lines.append(f"[{when}] -- {e.get('type')}")
    return "\n".join(lines) + "\n"


_CSV_FIELDS = [
    "conversation",
    "seq",
    "ts",
    "time",
    "from",
    "from_name",
    "whisper",
    "text",
    "flag_rule",
    "flag_category",
    "flag_severity",
    "flag_text",
    "flag_outcome",
    "flag_review",
    "flag_agent",
    "flag_agent_name",
    "csat",
    "csat_comment",
    # A row of a move of the chat (``_move``); after the older columns, so that a sheet
    # that reads those by position still does.
    "event",
    "event_from",
    "event_from_name",
    "event_to",
    "event_to_name",
    "event_team",
    "note",
]


def _csv_rows(t: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    flags_by_seq: dict[str, list[dict[str, Any]]] = {}
    for f in t["flags"]:
        flags_by_seq.setdefault(f.get("seq", ""), []).append(f)
    # Whispers and moves of the chat (assigned, transferred, taken over, back in the
    # queue) go between the messages by time, as in the text export; an event and a
    # whisper of one millisecond, the event first.
    said = [(e.get("ts") or 0, 0, e) for e in t["events"] if e.get("type") == "message" or _move(e)]
    said += [(w.get("ts") or 0, 1, {**w, "type": "whisper"}) for w in t["whispers"]]
    said.sort(key=lambda x: (x[0], x[1]))
    for _, _, e in said:
        if move := _move(e):
            rows.append(
                {
                    "conversation": t["conversation"],
                    "seq": e.get("seq", ""),
                    "ts": e.get("ts"),
                    "time": _iso(e.get("ts")),
                    **move,
                    "csat": t["csat"],
                    "csat_comment": t["csat_comment"],
                }
            )
            continue
        who = e.get("from") or {}
        whisper = e["type"] == "whisper"
        base = {
            "conversation": t["conversation"],
            "seq": e.get("seq", ""),
            "ts": e.get("ts"),
            "time": _iso(e.get("ts")),
            "from": "supervisor" if whisper else who.get("role"),
            "from_name": who.get("name") or who.get("id") or who.get("role") or "",
            "whisper": "yes" if whisper else "",
            "text": e.get("text", ""),
            "csat": t["csat"],
            "csat_comment": t["csat_comment"],
        }
        flags = [] if whisper else flags_by_seq.get(e.get("seq", ""), [])
        if not flags:
            rows.append(base)
        for f in flags:
            rows.append(
                {
                    **base,
                    "flag_rule": f["rule"],
                    "flag_category": f["category"],
                    "flag_severity": f["severity"],
                    "flag_text": f["text"],
                    "flag_outcome": f["outcome"],
                    "flag_review": (f.get("review") or {}).get("status", ""),
                    # Who sent the flagged message, as the transcript names them.
                    "flag_agent": f.get("agent") or "",
                    "flag_agent_name": f.get("agent_name") or "",
                }
            )
    return rows


# A cell that starts with one of these is a formula to Excel and LibreOffice (a tab or a
# carriage return first too, as they skip it); the customer types names and texts that
# land in cells, so such a cell gets a leading ' and reads as text (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """``value`` as a CSV cell that a spreadsheet shows and never runs."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_safe(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _cell(v) for k, v in row.items()}


def _export(transcripts: list[dict[str, Any]] | dict[str, Any], fmt: str, name: str) -> Response:
    """Transcripts in ``fmt``: a set as a list (in JSON, whatever its length), one
    transcript as itself."""
    if fmt == "json":
        body = json.dumps(transcripts, ensure_ascii=False, indent=1)
        return Response(
            body,
            media_type="application/json",
            headers={"content-disposition": f'attachment; filename="{name}.json"'},
        )
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for t in _listed(transcripts):
            writer.writerows(_csv_safe(r) for r in _csv_rows(t))
        return Response(
            # A byte order mark first, so that Excel reads UTF-8 (č, ć, š, Cyrillic), not ANSI.
            "\ufeff" + buf.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}.csv"'},
        )
    if fmt == "txt":
        return PlainTextResponse(
            "\n".join(_as_text(t) for t in _listed(transcripts)),
            headers={"content-disposition": f'attachment; filename="{name}.txt"'},
        )
    raise ApiError(400, "invalid_request", "format: json, csv or txt")


def _listed(transcripts: list[dict[str, Any]] | dict[str, Any]) -> list[dict[str, Any]]:
    return transcripts if isinstance(transcripts, list) else [transcripts]


async def export_one(request: Request) -> Response:
    await _supervisor(request)
    conv = request.path_params["conv"]
    return _export(
        await _transcript(request, conv), request.query_params.get("format", "json"), conv
    )


async def export_many(request: Request) -> Response:
    await _supervisor(request)
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "csv", "txt"):
        raise ApiError(400, "invalid_request", "format: json, csv or txt")
    items = (await _filtered(request))[:MAX_EXPORT]
    transcripts = [await _transcript(request, s["conversation"]) for s in items]
    return _export(transcripts, fmt, "transcripts")


async def review_flag(request: Request) -> JSONResponse:
    uid = await _supervisor(request)
    relay = _relay(request)
    flag_id = request.path_params["flag"]
    body: FlagReview = await _json(request, FlagReview)
    conv = request.query_params.get("conversation") or ""
    if not conv:
        # The flag id does not name its conversation; look through the flagged ones.
        flagged = cast(list[str], await relay.redis.zrevrange(FLAGGED, 0, MAX_SCAN - 1))
        for candidate in flagged:
            if await relay.redis.hexists(conv_key(candidate, "flags"), flag_id):
                conv = candidate
                break
    if not conv:
        raise ApiError(404, "not_found", f"no flag {flag_id}")
    now = now_ms()
    review = {"status": body.status, "note": body.note, "by": uid, "ts": now}
    try:
        flag = await false_alarms.mark(relay.redis, conv, flag_id, review, now)
    except false_alarms.FlagBusy:
        raise ApiError(409, "conflict", f"flag {flag_id} keeps changing; try again") from None
    if flag is None:
        raise ApiError(404, "not_found", f"no flag {flag_id}")
    return JSONResponse(flag)


async def rule_quality(request: Request) -> JSONResponse:
    """Every rule that raised a flag, all time or in the period ``from``–``to``: the flags
    it raised (whatever the agent did with them), those marked false alarms, and their
    rate; the most annoying first (highest rate, then most false alarms, then most fires)."""
    await _supervisor(request)
    relay = _relay(request)
    now = now_ms()
    await false_alarms.settle(relay.redis, int(relay.settings.repair_after_s * 1000), now)
    q = request.query_params
    fires: dict[str, int] = {}
    false: dict[str, int] = {}
    if q.get("from") or q.get("to"):
        days = _day_range(request)
        pipe = relay.redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(rule_fires_key(day))
            pipe.hgetall(false_alarms.day_key(day))
        counts = await pipe.execute()
        for i in range(len(days)):
            _add(fires, counts[2 * i])
            _add(false, counts[2 * i + 1])
    else:
        _add(fires, await relay.redis.hgetall(RULE_FIRES))
        _add(false, await relay.redis.hgetall(false_alarms.COUNTS))
    rows: list[tuple[str, int, int]] = []
    for rule in set(fires) | set(false):
        fa = max(0, false.get(rule, 0))
        # A false alarm on a flag raised before applied flags counted as fires has no
        # fire to its name; a rule fired at least as often as it misfired.
        n = max(fires.get(rule, 0), fa)
        if n:
            rows.append((rule, n, fa))
    rows.sort(key=lambda r: (-r[2] / r[1], -r[2], -r[1], r[0]))
    return JSONResponse(
        [
            {"rule": rule, "fires": n, "false_alarms": fa, "rate": round(fa / n, 4)}
            for rule, n, fa in rows
        ]
    )


def _add(total: dict[str, int], counts: dict[Any, Any]) -> None:
    for key, value in counts.items():
        total[str(key)] = total.get(str(key), 0) + int(value)


def _day_range(request: Request) -> list[str]:
    """The days (UTC) from ``from`` to ``to``; the last 30 days up to ``to`` (or today)
    when ``from`` is not given."""
    q = request.query_params
    given_to = _day(q.get("to"), "to")
    end = given_to or datetime.now(UTC).date()
    start = _day(q.get("from"), "from") or end - timedelta(days=29)
    if end < start:
        # Say both dates as read: without ``to`` the end is today, which the asker never
        # typed, so "to is before from" alone sent them looking for a date they had not set.
        to_said = f"to {end}" + ("" if given_to else " (today, UTC, as no to was given)")
        raise ApiError(400, "invalid_request", f"from {start} is after {to_said}")
    if (end - start).days >= MAX_DAYS:
        raise ApiError(400, "invalid_request", f"at most {MAX_DAYS} days")
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _day(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "invalid_request", f"{name}: a date like 2026-11-23") from None


#: What an agent did with a flag, as a scorecard counts it (server.coaching.scored_outcome).
OUTCOMES = ("applied", "ignored", "overridden", "not_seen")


def _card(counters: dict[str, int]) -> dict[str, Any]:
    """One scorecard from its counters. Flags are every flag raised on the agent's sent
    messages, applied or not, as the conversation list and the transcript count them;
    each has one outcome, so the outcome shares add up to 1. A rate or a time with nothing
    to measure it by (flags per 100 without messages, a share without flags, an average
    without any) is None, not 0, so a day without activity is a gap in a chart; counts
    stay 0."""
    msgs = counters.get("messages", 0)
    outcomes = {o: counters.get("outcome:" + o, 0) for o in OUTCOMES}
    raised = sum(outcomes.values())
    per100 = (
        {
            k.split(":", 1)[1]: round(v * 100 / msgs, 2)
            for k, v in counters.items()
            if k.startswith("flags:")
        }
        if msgs
        else None
    )
    shares = {o: round(n / raised, 4) for o, n in outcomes.items()} if raised else None
    fr, frn = counters.get("first_response_ms", 0), counters.get("first_responses", 0)
    hd, hdn = counters.get("handling_ms", 0), counters.get("handled", 0)
    cs, csn = counters.get("csat_sum", 0), counters.get("csat_count", 0)
    return {
        "messages": msgs,
        "flags_raised": raised,
        "flags_per_100_total": round(raised * 100 / msgs, 2) if msgs else None,
        "flags_per_100": per100,
        "outcomes": outcomes,
        "outcome_shares": shares,
        "applied_share": shares["applied"] if shares else None,
        "first_response_s": round(fr / frn / 1000, 1) if frn else None,
        "handling_s": round(hd / hdn / 1000, 1) if hdn else None,
        "csat": round(cs / csn, 2) if csn else None,
        "conversations": hdn,
    }


async def scorecards(request: Request) -> JSONResponse:
    await _supervisor(request)
    relay = _relay(request)
    days = _day_range(request)
    wanted = request.query_params.get("agent")
    agents = [wanted] if wanted else sorted(cast(set[str], await relay.redis.smembers(f"{G}users")))
    names = await _names(request, agents)
    out = []
    for agent in agents:
        pipe = relay.redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(score_key(agent, day))
        per_day = await pipe.execute()
        total: dict[str, int] = {}
        series = []
        for day, raw in zip(days, per_day, strict=True):
            counters = {k: int(v) for k, v in raw.items()}
            for k, v in counters.items():
                total[k] = total.get(k, 0) + v
            series.append({"day": day, **_card(counters)})
        if not total and wanted is None:
            continue
        out.append(
            {"agent": agent, "name": names.get(agent, agent), **_card(total), "days": series}
        )
    return JSONResponse({"from": days[0], "to": days[-1], "agents": out})


def waiting_since(newest_first: list[dict[str, Any]]) -> int | None:
    """When the visitor's oldest message not yet answered was sent (ms), from events newest
    first; None when someone other than the visitor wrote last or nobody wrote."""
    since = None
    for e in newest_first:
        if e.get("type") != "message":
            continue
        if (e.get("from") or {}).get("role") != "visitor":
            break
        since = int(e.get("ts") or 0)
    return since


async def live(request: Request) -> JSONResponse:
    await _supervisor(request)
    relay = _relay(request)
    now = now_ms()
    ids = cast(list[str], await relay.redis.zrevrange(f"{G}convs", 0, MAX_SCAN - 1))
    pipe = relay.redis.pipeline(transaction=False)
    for conv in ids:
        pipe.hgetall(conv_key(conv, "state"))
        pipe.lindex(conv_key(conv, "coachlog"), -1)
        pipe.zscore(f"{G}coach-wait", conv)
    res = await pipe.execute()
    open_ = [
        (conv, *res[3 * i : 3 * i + 3])
        for i, conv in enumerate(ids)
        if res[3 * i] and res[3 * i].get("status") != "closed"
    ]
    pipe = relay.redis.pipeline(transaction=False)
    for conv, *_ in open_:
        pipe.xrevrange(conv_key(conv, "events"), "+", "-", count=WAIT_SCAN)
        pipe.lrange(conv_key(conv, "coachlog"), -LOG_SCAN, -1)
        pipe.hvals(conv_key(conv, "flags"))
        pipe.zscore(f"{G}left", conv)
    read = await pipe.execute()
    events, logs, flags, left = read[0::4], read[1::4], read[2::4], read[3::4]
    names = await _names(request, (st.get("agent") for _, st, *_ in open_))
    present = await presence_of(relay, (st.get("agent") or "" for _, st, *_ in open_))
    online = await relay.store.online_by_lang(chat_lang(st) for _, st, *_ in open_)
    cues = [_last_cue(log) for log in logs]
    pipe = relay.redis.pipeline(transaction=False)
    for (conv, *_), cue in zip(open_, cues, strict=True):
        if cue and cue.get("seq"):
            pipe.xrange(conv_key(conv, "events"), cue["seq"], cue["seq"], count=1)
    cued = iter(await pipe.execute())
    for cue in cues:
        if cue and cue.get("seq"):
            rows = next(cued)
            text = decode_event(rows[0][0], rows[0][1]["e"]).get("text") if rows else None
            start, end = int(cue.get("start") or 0), int(cue.get("end") or 0)
            cue["said"] = cue_excerpt(str(text), start, end) if text else None
    items = []
    for (conv, st, last, wait_due), recent, cue, raw_flags, left_at in zip(
        open_, events, cues, flags, left, strict=True
    ):
        last_rec = json.loads(last) if last else None
        since = waiting_since([decode_event(seq, fields["e"]) for seq, fields in recent])
        lang = chat_lang(st)
        queued = st.get("status") == "queued"
        items.append(
            {
                "conversation": conv,
                "status": st.get("status"),
                "agent": st.get("agent") or None,
                "agent_name": names.get(st.get("agent") or ""),
                **_agent_presence(present.get(st.get("agent") or "")),
                "visitor": visitor_of(st),
                "preview": st.get("preview", ""),
                "lang": lang,
                "left_message": queued and left_at is not None,
                "agents_online": online[lang],
                "no_agent_for_lang": queued and online[lang] == 0,
                "started_at": int(st.get("created") or 0),
                "waiting": wait_due is not None,
                "last_coach": last_rec,
                "last_cue": cue,
                "last_flag": _last_flag(raw_flags),
                "age_s": (now - int(st.get("created") or now)) // 1000,
                "waiting_s": None if since is None else max(0, now - since) // 1000,
            }
        )
    return JSONResponse({"items": items})


def chat_lang(st: dict[str, str]) -> str:
    """A conversation's language as agents list theirs: ``sr`` for ``sr-Cyrl`` and ``sr-Latn``."""
    return (st.get("lang") or "en").split("-", 1)[0].lower()


def _last_cue(log: list[str]) -> dict[str, Any] | None:
    """The newest cue among coaching records (oldest first): what the customer said that
    the coach noticed, ``{seq, ts, category, severity, start, end, text, message}``."""
    for raw in reversed(log):
        rec = json.loads(raw)
        if rec.get("kind") == "cue":
            keys = ("seq", "ts", "category", "severity", "start", "end", "text", "message")
            return {k: rec.get(k) for k in keys}
    return None


def _last_flag(raw_flags: list[str]) -> dict[str, Any] | None:
    """The newest flag raised on a sent agent message, whatever the agent did with it:
    ``{id, seq, ts, rule, category, severity, text, outcome}``."""
    if not raw_flags:
        return None
    records = [json.loads(r) for r in raw_flags]
    rec = max(records, key=lambda f: (f.get("ts") or 0, f.get("seq") or "", f.get("start") or 0))
    keys = ("id", "seq", "ts", "rule", "category", "severity", "text", "outcome")
    return {k: rec.get(k) for k in keys}


def _agent_presence(p: Presence | None) -> dict[str, Any]:
    """``agent_status`` (as in /api/agents) and ``held_until`` of a chat's agent."""
    if p is None:
        return {"agent_status": None, "held_until": None}
    return {"agent_status": p.status, "held_until": p.held_until}


def openapi_paths() -> dict[str, Any]:
    """The review API's part of /openapi.json (shapes: docs/coaching.md)."""
    bearer: list[dict[str, list[str]]] = [{"session": []}]
    obj = {"type": "object"}
    err = {"description": "error", "content": {"application/json": {"schema": obj}}}

    def ok(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
        return {"description": "OK", "content": {media: {"schema": schema}}}

    def q(name: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "in": "query", "schema": schema}

    conv = {"name": "conv", "in": "path", "required": True, "schema": {"type": "string"}}
    date_s = {"type": "string", "format": "date"}
    filters = [
        q("from", date_s),
        q("to", date_s),
        q("agent", {"type": "string"}),
        q("category", {"type": "string"}),
        q("severity", {"enum": ["info", "warning", "alert"]}),
        q("lang", {"enum": ["en", "sr", "hr", "sl"]}),
        q("site", {"type": "string"}),
        q("csat", {"type": "integer", "minimum": 1, "maximum": 5}),
        q("has_flags", {"type": "boolean"}),
        q("flag_ignored", {"type": "boolean"}),
    ]
    fmt = q("format", {"enum": ["json", "csv", "txt"]})
    export_ok = {
        "description": "OK",
        "content": {
            m: {"schema": {"type": "string"}}
            for m in ("application/json", "text/csv", "text/plain")
        },
    }
    errors = {"400": err, "401": err, "403": err}

    def get(
        op: str, summary: str, params: list[dict[str, Any]], response: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "get": {
                "operationId": op,
                "summary": summary,
                "security": bearer,
                "parameters": params,
                "responses": {"200": response, **errors},
            }
        }

    page = [
        q("page", {"type": "integer", "minimum": 1}),
        q("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
    ]
    return {
        "/api/review/conversations": get(
            "reviewConversations",
            "Conversations with flags, most severe first",
            filters + page,
            ok(obj),
        ),
        "/api/review/conversations/{conv}": get(
            "reviewTranscript",
            "A transcript with its flags, cues, scripts and time line",
            [conv],
            ok(obj),
        ),
        "/api/review/conversations/{conv}/export": get(
            "exportTranscript", "One transcript as JSON, CSV or text", [conv, fmt], export_ok
        ),
        "/api/review/export": get(
            "exportTranscripts", "A filtered set of transcripts", filters + [fmt], export_ok
        ),
        "/api/review/flags/{flag}": {
            "post": {
                "operationId": "reviewFlag",
                "summary": "Mark a flag false_alarm or reviewed",
                "security": bearer,
                "parameters": [
                    {"name": "flag", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": FlagReview.model_json_schema()}},
                },
                "responses": {"200": ok(obj), "404": err, "409": err, **errors},
            }
        },
        "/api/review/scorecards": get(
            "scorecards",
            "Per-agent scorecards, per day",
            [q("from", date_s), q("to", date_s), q("agent", {"type": "string"})],
            ok(obj),
        ),
        "/api/review/rule-quality": get(
            "ruleQuality",
            "Fires and false alarms per rule, all time or in a period",
            [q("from", date_s), q("to", date_s)],
            ok({"type": "array"}),
        ),
        "/api/review/live": get("liveConversations", "Active conversations", [], ok(obj)),
        "/api/rules/reload": {
            "post": {
                "operationId": "reloadRules",
                "summary": "Recompile the rules now",
                "security": bearer,
                "responses": {"200": ok(obj), "422": err, "401": err, "403": err},
            }
        },
        "/api/visitors/{visitor}": {
            "delete": {
                "operationId": "deleteVisitor",
                "summary": "Delete a visitor's data and tokens",
                "security": bearer,
                "parameters": [
                    {
                        "name": "visitor",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {"200": ok(obj), "401": err, "403": err},
            }
        },
    }
