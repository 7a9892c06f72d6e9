"""The Starlette application: WebSocket endpoints, HTTP API, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from server import api, pages, privacy, redisconn, review
from server.accounts import create_demo_accounts
from server.checker import DraftChecker
from server.coaching import Coaching
from server.config import Settings, Site, load_settings
from server.embedded_redis import EmbeddedRedis
from server.errors import ApiError
from server.metrics import Metrics
from server.relay import Relay, Session, origin_allowed
from server.rules_runtime import RulesRuntime, settle_heap
from server.secret import resolve_secret
from server.security import SecurityHeaders
from server.store import user_channel

log = logging.getLogger("tactline")

DEMO_SITE = "demo"
DEMO_ORIGINS = ["self", "http://localhost:*", "http://127.0.0.1:*"]
RULES_DIR = Path(__file__).resolve().parent.parent / "rules"

# Timeouts
READY_PING_TIMEOUT_S = 1.0


def sites_for(settings: Settings) -> dict[str, Site]:
    sites = dict(settings.sites)
    if settings.demo and DEMO_SITE not in sites:
        sites[DEMO_SITE] = Site(origins=list(DEMO_ORIGINS), name="Demo")
    return sites


def create_app(settings: Settings | None = None, *, load_coach: bool = True) -> Starlette:
    """Build the app; settings come from the TACTLINE_* environment when not given."""
    settings = settings or load_settings()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        embedded = None
        url = settings.redis_url
        if url is None:
            embedded = EmbeddedRedis(settings.data_dir)
            url = await asyncio.to_thread(embedded.start)
        secret = resolve_secret(settings)
        conns = await redisconn.connect(url, settings.redis_cluster)
        redis = conns.commands
        relay = Relay(
            settings,
            secret,
            redis,
            metrics,
            pubsub=conns.pubsub,
            pubsub_fallbacks=conns.pubsub_fallbacks,
        )
        relay.sites = sites_for(settings)
        rules = RulesRuntime(settings.rules_dir or RULES_DIR, cache_dir=settings.data_dir / "cache")

        async def publish_to_agent(agent: str, frame: dict[str, Any]) -> None:
            notice = json.dumps({"kind": "frame", "frame": frame}, ensure_ascii=False)
            await redis.publish(user_channel("agent", agent), notice)

        if load_coach and settings.coach:
            rules.start()
            relay.coaching = Coaching(
                redis,
                rules,
                publish_to_agent,
                hold_after_s=settings.hold_after_s,
                cue_cooldown_s=settings.cue_cooldown_s,
                upset_window_s=settings.upset_window_s,
                observe_draft=metrics.draft_check.observe,
                batch=relay.store.batch,
            )
            if settings.draft_checker:
                relay.drafts.checker = DraftChecker(
                    rules.rules_dir,
                    rules.cache_dir,
                    lambda: rules.coach.fingerprint if rules.coach else None,
                )
        else:
            rules.error = "coach loading disabled"
        app.state.relay = relay
        app.state.redis = conns
        app.state.coach = rules
        if settings.demo:
            made = await create_demo_accounts(redis)
            if made:
                lines = "\n".join(f"    {n:<12} {r:<11} {pw}" for n, r, pw in made)
                print(
                    f"Demo accounts (shown once; change with `tactline users add`):\n{lines}",
                    flush=True,
                )
        await relay.start()
        if relay.coaching is not None:
            relay.coaching.start()
        retention = asyncio.create_task(
            privacy.retention_loop(redis, settings.retention_days), name="retention"
        )
        settle_heap()  # what start-up made lives as long as the process
        try:
            yield
        finally:
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
            if relay.coaching is not None:
                await relay.coaching.stop()
            if relay.drafts.checker is not None:
                await relay.drafts.checker.stop()
            await rules.stop()
            await relay.stop()
            await conns.aclose()
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        relay: Relay = request.app.state.relay
        coach: RulesRuntime = request.app.state.coach
        reasons = []
        conns: redisconn.RedisConnections = request.app.state.redis
        try:
            await asyncio.wait_for(relay.redis.ping(), READY_PING_TIMEOUT_S)
            if await asyncio.wait_for(conns.mode_mismatch(), READY_PING_TIMEOUT_S):
                reasons.append("redis is a cluster, but it was unreachable at start: restart")
        except (RedisError, OSError, TimeoutError):
            reasons.append("redis unreachable")
        if not coach.ready:
            reasons.append("rules not loaded" + (f" ({coach.error})" if coach.error else ""))
        if reasons:
            return PlainTextResponse("not ready: " + "; ".join(reasons) + "\n", status_code=503)
        detail = ""
        if coach.error:
            # The running rules stay; the last reload failed and says where.
            detail = f"; last rules reload failed, previous rules in use: {coach.error}"
        checker = relay.drafts.checker
        if checker is not None and checker.active and not checker.usable():
            detail += "; draft checker starting, or following new rules: "
            detail += "drafts are checked in this process meanwhile"
        return PlainTextResponse(f"ready: redis reachable, rules loaded{detail}\n")

    async def rules_reload(request: Request) -> Response:
        uid, role = await api._caller(request)
        if role != "supervisor":
            raise ApiError(403, "forbidden", "supervisors only")
        rules: RulesRuntime = request.app.state.coach
        ok = await rules.reload()
        return JSONResponse({"ok": ok, **rules.status()}, status_code=200 if ok else 422)

    async def metrics_endpoint(request: Request) -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    async def openapi(request: Request) -> Response:
        document = api.openapi_document()
        document["paths"].update(review.openapi_paths())
        return JSONResponse(document)

    async def ws_visitor(websocket: WebSocket) -> None:
        relay: Relay = websocket.app.state.relay
        origin = websocket.headers.get("origin")
        host = websocket.headers.get("host")
        if origin and not any(origin_allowed(s, origin, host) for s in relay.sites.values()):
            metrics.errors["origin_forbidden"] += 1
            await websocket.close(code=1008)  # before accept: HTTP 403
            return
        await _serve(relay, websocket, "visitor")

    async def ws_agent(websocket: WebSocket) -> None:
        await _serve(websocket.app.state.relay, websocket, "agent")

    async def _serve(relay: Relay, websocket: WebSocket, endpoint: str) -> None:
        ip = websocket.client.host if websocket.client else "unknown"
        count = relay.ip_connections.get(ip, 0)
        if count >= settings.max_connections_per_ip:
            await websocket.close(code=1008)
            return
        relay.ip_connections[ip] = count + 1
        try:
            await websocket.accept()
            await Session(relay, websocket, endpoint, ip).run()
        finally:
            left = relay.ip_connections.get(ip, 1) - 1
            if left <= 0:
                relay.ip_connections.pop(ip, None)
            else:
                relay.ip_connections[ip] = left

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        Route("/openapi.json", openapi),
        Route("/api/visitors", api.create_visitor_token, methods=["POST", "OPTIONS"]),
        Route("/api/login", api.login, methods=["POST"]),
        Route("/api/logout", api.logout, methods=["POST"]),
        Route("/api/conversations", api.list_conversations),
        Route("/api/conversations/{conv}", api.get_conversation),
        Route("/api/agents", api.list_agents),
        Route("/api/rules/reload", rules_reload, methods=["POST"]),
        Route("/api/visitors/{visitor}", privacy.api_delete_visitor, methods=["DELETE"]),
        Route("/api/review/conversations", review.list_flagged),
        Route("/api/review/conversations/{conv}", review.get_transcript),
        Route("/api/review/conversations/{conv}/export", review.export_one),
        Route("/api/review/export", review.export_many),
        Route("/api/review/flags/{flag}", review.review_flag, methods=["POST"]),
        Route("/api/review/scorecards", review.scorecards),
        Route("/api/review/rule-quality", review.rule_quality),
        Route("/api/review/live", review.live),
        WebSocketRoute("/ws/visitor", ws_visitor),
        WebSocketRoute("/ws/agent", ws_agent),
        *pages.routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={ApiError: api_error})
    app.add_middleware(SecurityHeaders)
    app.state.settings = settings
    return app


def create_app_from_env() -> Starlette:
    """uvicorn factory for worker processes."""
    return create_app()
