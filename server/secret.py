"""The signing secret: from TACTLINE_SECRET, else kept in the data dir (development only)."""

from __future__ import annotations

import logging
import os
import secrets as _secrets
from pathlib import Path

from server.config import ConfigError, Settings

log = logging.getLogger("tactline.secret")

SECRET_FILE = "secret"


def resolve_secret(settings: Settings) -> str:
    if settings.secret:
        return settings.secret
    if settings.env == "production":
        raise ConfigError(
            "TACTLINE_SECRET: required when TACTLINE_ENV=production (32+ random characters)"
        )
    path = Path(settings.data_dir) / SECRET_FILE
    if path.exists():
        value = path.read_text().strip()
        log.info("using the development secret kept in %s", path)
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = _secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    log.warning("TACTLINE_SECRET is unset: generated a development secret in %s", path)
    return value
