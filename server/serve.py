"""``tactline serve``: settings, the embedded Redis, the secret, then uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

import uvicorn

from server.config import ConfigError, load_settings
from server.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from server.secret import resolve_secret
from server.workers import Workers, bind_sockets, reuse_port_supported

log = logging.getLogger("tactline")

APP = "server.app:create_app_from_env"


def main(args: argparse.Namespace) -> int:
    """Run the server until interrupted; returns the exit status."""
    if args.no_demo:
        os.environ["TACTLINE_DEMO"] = "false"
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"tactline: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    if args.workers < 1:
        print("tactline: --workers must be 1 or more", file=sys.stderr)
        return 2
    try:
        # Workers must share one secret and one Redis: resolve both here, pass them on.
        os.environ["TACTLINE_SECRET"] = resolve_secret(settings)
    except ConfigError as exc:
        print(f"tactline: {exc}", file=sys.stderr)
        return 2
    embedded = None
    if settings.redis_url is None:
        embedded = EmbeddedRedis(settings.data_dir)
        try:
            os.environ["TACTLINE_REDIS_URL"] = embedded.start()
        except EmbeddedRedisError as exc:
            print(f"tactline: {exc}", file=sys.stderr)
            return 1
    # Several workers listen on sockets of their own where the kernel can spread
    # connections over them (server/workers.py); otherwise they share one.
    own_sockets = args.workers > 1 and reuse_port_supported()
    try:
        sockets = bind_sockets(args.host, args.port, args.workers if own_sockets else 1)
    except OSError as exc:
        print(f"tactline: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        if embedded:
            embedded.stop()
        return 1
    port = sockets[0].getsockname()[1]
    print(f"tactline listening on http://{args.host}:{port}", flush=True)
    # uvicorn re-raises SIGTERM after its graceful shutdown; make that an exception so the
    # embedded Redis below is stopped too.
    signal.signal(signal.SIGTERM, _terminate)
    options: dict[str, Any] = {
        "factory": True,
        "workers": args.workers,
        # uvicorn's debug log prints WebSocket frames, tokens in hello included.
        "log_level": "info" if settings.log_level == "debug" else settings.log_level,
        "access_log": False,
        "ws_max_size": settings.max_frame_bytes,
        "ws_ping_interval": settings.ping_interval_s,
        "ws_ping_timeout": settings.ping_timeout_s,
        "ws_per_message_deflate": settings.ws_compression,
        "timeout_graceful_shutdown": 5,
    }
    try:
        if own_sockets:
            Workers(uvicorn.Config(APP, **options), sockets).run()
        else:
            uvicorn.run(APP, fd=sockets[0].fileno(), **options)
    finally:
        for sock in sockets:
            sock.close()
        if embedded is not None:
            embedded.stop()
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
