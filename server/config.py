"""Settings: every ``TACTLINE_*`` environment variable, validated at start."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError


class Site(BaseModel):
    """A website that embeds the widget."""

    origins: list[str] = Field(default_factory=list)
    secret: str | None = None  # identity verification (user_hash); None: not offered
    name: str = ""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TACTLINE_", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./var")
    redis_url: str | None = None
    #: Whether TACTLINE_REDIS_URL is a node of a Redis Cluster; unset: ask it.
    redis_cluster: bool | None = None
    secret: str | None = Field(default=None, min_length=32)
    sites: dict[str, Site] = Field(default_factory=dict)
    demo: bool = True
    coach: bool = True  # load the phrasing coach at start (/readyz waits for it)
    #: Check drafts in a process of its own at a lower CPU priority (server/checker.py).
    #: Off by default: on the 2-CPU bench machine it measured slower (docs/benchmarks.md).
    draft_checker: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Limits
    max_frame_bytes: int = Field(default=16 * 1024, ge=256, le=1024 * 1024)
    max_text_chars: int = Field(default=4000, ge=1, le=100_000)
    rate_conn_per_s: float = Field(default=20.0, gt=0)
    rate_conn_burst: int = Field(default=40, ge=1)
    rate_ip_per_s: float = Field(default=100.0, gt=0)
    rate_ip_burst: int = Field(default=200, ge=1)
    rate_strikes: int = Field(default=10, ge=1)
    outbound_queue: int = Field(default=1000, ge=8)
    history_limit: int = Field(default=500, ge=1)
    login_attempts_per_min: int = Field(default=10, ge=1)
    max_connections_per_ip: int = Field(default=1000, ge=1)
    # permessage-deflate costs ~30 KB per connection and CPU per frame; chat frames are small
    ws_compression: bool = False

    # Timeouts
    hello_timeout_s: float = Field(default=10.0, gt=0)
    idle_timeout_s: float = Field(default=120.0, gt=0)
    ping_interval_s: float = Field(default=20.0, gt=0)
    ping_timeout_s: float = Field(default=20.0, gt=0)
    grace_period_s: float = Field(default=60.0, ge=0)
    #: An open chat whose visitor has had no connection this long is closed (0: never).
    visitor_gone_close_s: float = Field(default=1800.0, ge=0)
    sweep_interval_s: float = Field(default=1.0, gt=0)
    #: How often one process looks for assignments nobody announced, and how
    #: old such an assignment must be (an announcement takes milliseconds).
    repair_interval_s: float = Field(default=10.0, gt=0)
    repair_after_s: float = Field(default=5.0, gt=0)
    presence_ttl_s: float = Field(default=15.0, gt=1)

    # Tokens
    visitor_token_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    session_ttl_s: int = Field(default=12 * 3600, ge=1)

    # Coaching (docs/coaching.md)
    rules_dir: Path | None = None  # default: the rules/ folder of the installation
    hold_after_s: float = Field(default=60.0, gt=0)
    cue_cooldown_s: float = Field(default=300.0, ge=0)
    upset_window_s: float = Field(default=300.0, ge=0)
    retention_days: int = Field(default=365, ge=1)

    # Routing
    default_capacity: int = Field(default=3, ge=1, le=20)
    avg_handle_s: float = Field(default=180.0, gt=0)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("sites", mode="before")
    @classmethod
    def _sites(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value


class ConfigError(Exception):
    """A TACTLINE_* variable is wrong; the message names it."""


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the environment; raise :class:`ConfigError` naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "TACTLINE_" + str(err["loc"][0]).upper() if err["loc"] else "TACTLINE_*"
            lines.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    except SettingsError as exc:
        found = re.search(r'field "(\w+)"', str(exc))
        name = "TACTLINE_" + found.group(1).upper() if found else "TACTLINE_*"
        raise ConfigError(f"invalid configuration:\n  {name}: not valid JSON") from None
