"""Agent and supervisor accounts: argon2id hashes in Redis, ``tactline users add``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import secrets
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis

from server.protocol import LANGS
from server.store import G
from server.tokens import Claims

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
ROLES = ("agent", "supervisor")

# Limits
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024

_hasher = PasswordHasher()  # argon2id with the library's recommended parameters
# Verifying against this keeps unknown names as slow as wrong passwords.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class AccountError(Exception):
    pass


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    display_name: str
    languages: list[str]
    teams: list[str]


def _key(name: str) -> str:
    return f"{G}user:{name}"


def validate(name: str, role: str, languages: list[str], password: str) -> None:
    if not NAME_RE.match(name):
        raise AccountError(f"[A001] bad name {name!r}: use a-z, 0-9, _ . - (max 32)")
    if role not in ROLES:
        raise AccountError(f"[A002] role must be one of {', '.join(ROLES)}")
    for lang in languages:
        if lang not in LANGS:
            raise AccountError(f"[A003] unknown language {lang!r}; known: {', '.join(LANGS)}")
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise AccountError(f"[A004] password must have {MIN_PASSWORD_CHARS}+ characters")


async def add_account(
    r: Redis,
    name: str,
    role: str,
    password: str,
    *,
    display_name: str | None = None,
    languages: list[str] | None = None,
    teams: list[str] | None = None,
) -> Account:
    langs = languages or ["en"]
    validate(name, role, langs, password)
    account = Account(
        name=name,
        role=role,
        display_name=display_name or name.capitalize(),
        languages=langs,
        teams=teams or ["support"],
    )
    pw_hash = await asyncio.to_thread(_hasher.hash, password)
    await r.hset(
        _key(name),
        mapping={
            "name": name,
            "role": role,
            "display_name": account.display_name,
            "languages": ",".join(langs),
            "teams": ",".join(account.teams),
            "hash": pw_hash,
        },
    )
    await r.sadd(f"{G}users", name)
    return account


def _from_hash(h: dict[str, str]) -> Account:
    return Account(
        name=h["name"],
        role=h["role"],
        display_name=h.get("display_name") or h["name"],
        languages=[x for x in h.get("languages", "en").split(",") if x],
        teams=[x for x in h.get("teams", "support").split(",") if x],
    )


async def get_account(r: Redis, name: str) -> Account | None:
    h = cast(dict[str, str], await r.hgetall(_key(name)))
    return _from_hash(h) if h else None


def _ended_key(sid: str) -> str:
    return f"{G}session-ended:{sid}"


async def session_account(r: Redis, claims: Claims) -> Account | None:
    """The account a session token speaks for, read on every use: None once the account
    is gone or the session was ended by logging out."""
    sid = claims.data.get("sid")
    pipe = r.pipeline(transaction=False)
    pipe.hgetall(_key(claims.sub))
    if isinstance(sid, str):
        pipe.exists(_ended_key(sid))
    found = await pipe.execute()
    h = cast(dict[str, str], found[0])
    if not h or any(found[1:]):
        return None
    return _from_hash(h)


async def end_session(r: Redis, claims: Claims) -> None:
    """Log out: the token stops working in every process, remembered until it would
    have expired anyway."""
    sid = claims.data.get("sid")
    if isinstance(sid, str):
        await r.set(_ended_key(sid), "1", exat=claims.exp)


async def display_names(r: Redis, names: Iterable[str]) -> dict[str, str]:
    """The display names of accounts as they are now, in one round trip; an account that
    does not exist (any more) is named by its id."""
    wanted = sorted({n for n in names if n})
    if not wanted:
        return {}
    pipe = r.pipeline(transaction=False)
    for name in wanted:
        pipe.hget(_key(name), "display_name")
    found = await pipe.execute()
    return {name: str(got) if got else name for name, got in zip(wanted, found, strict=True)}


async def list_accounts(r: Redis) -> list[Account]:
    """Every account, by name, read in one round trip after the list of names."""
    names = sorted(cast(set[str], await r.smembers(f"{G}users")))
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(_key(name))
    found = await pipe.execute() if names else []
    return [_from_hash(h) for h in found if h]


async def authenticate(r: Redis, name: str, password: str) -> Account | None:
    h = cast(dict[str, str], await r.hgetall(_key(name))) if NAME_RE.match(name) else {}
    stored = h.get("hash", _DUMMY_HASH)
    try:
        await asyncio.to_thread(_hasher.verify, stored, password[:MAX_PASSWORD_CHARS])
    except (VerificationError, InvalidHashError):
        return None
    return _from_hash(h) if h else None


async def login_allowed(r: Redis, keys: list[str], per_minute: int) -> bool:
    """Count one attempt under each key (user name, client IP); False when over the limit."""
    pipe = r.pipeline(transaction=False)
    bucket = int(time.time() // 60)
    for k in keys:
        key = f"{G}login:{k}:{bucket}"
        pipe.incr(key)
        pipe.expire(key, 120)
    res = await pipe.execute()
    return all(int(n) <= per_minute for n in res[0::2])


DEMO_ACCOUNTS = (
    ("agent1", "agent", "Jelena", ["en", "sr", "hr"]),
    ("agent2", "agent", "Marko", ["en", "sl"]),
    ("supervisor", "supervisor", "Ana", ["en", "sr", "hr", "sl"]),
)


async def create_demo_accounts(r: Redis) -> list[tuple[str, str, str]]:
    """On a Redis without accounts, add the demo accounts; returns (name, role, password)."""
    if await r.scard(f"{G}users"):
        return []
    if not await r.set(f"{G}demo-created", "1", nx=True):
        return []
    made = []
    for name, role, display, langs in DEMO_ACCOUNTS:
        password = secrets.token_urlsafe(9)
        await add_account(r, name, role, password, display_name=display, languages=langs)
        made.append((name, role, password))
    return made


def cli_add(args: argparse.Namespace) -> int:
    """``tactline users add NAME --role agent|supervisor``: password from a prompt or stdin."""
    from server.config import ConfigError, load_settings
    from server.embedded_redis import run_with_redis

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("error: passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    teams = [x.strip() for x in getattr(args, "teams", "support").split(",") if x.strip()]
    try:
        settings = load_settings()
        validate(args.name, args.role, languages, password)
    except (ConfigError, AccountError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    account = run_with_redis(
        settings,
        lambda r: add_account(
            r,
            args.name,
            args.role,
            password,
            display_name=args.display_name,
            languages=languages,
            teams=teams,
        ),
    )
    print(
        f"added {account.role} {account.name} ({account.display_name}; "
        f"{','.join(account.languages)})"
    )
    return 0
