from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from hub import db, logs, ws
from hub.api import (
    accounts,
    addresses,
    appointments,
    audit,
    clinic,
    docs,
    feeds,
    health,
    manage,
    preferences,
    schedules,
    signin,
    specializations,
    visits,
    waitlist,
)
from hub.api.context import RequestContext
from hub.api.endpoint import Endpoint, http_error, routes, server_error
from hub.clock import Clock, utcnow
from hub.config import Settings
from hub.errors import ConfigError
from hub.runtime import Hub, open_hub
from hub.state import Registry, State

log = logging.getLogger("hub")
# The browser apps: hub/static inside an installed wheel, static/ beside the package in a source
# tree (and an editable install).
PACKAGED = Path(__file__).resolve().parent / "static"
STATIC = PACKAGED if PACKAGED.is_dir() else PACKAGED.parent.parent / "static"
ENDPOINTS: list[Endpoint[Any, Any]] = [
    *accounts.ENDPOINTS,
    *schedules.ENDPOINTS,
    *visits.ENDPOINTS,
    *specializations.ENDPOINTS,
    *appointments.ENDPOINTS,
    *waitlist.ENDPOINTS,
    *clinic.ENDPOINTS,
    *audit.ENDPOINTS,
    *signin.ENDPOINTS,
    *addresses.ENDPOINTS,
    *feeds.ENDPOINTS,
    *manage.ENDPOINTS,
    *preferences.ENDPOINTS,
]


async def _revision(settings: Settings) -> str | None:
    engine = db.create_engine(settings.database_url)
    try:
        return await db.schema_revision(engine)
    except (DBAPIError, OSError) as exc:
        raise ConfigError(f"cannot reach the database: {exc}") from exc
    finally:
        await engine.dispose()


async def prepare_schema(settings: Settings) -> None:
    """Embedded: create or upgrade the schema. MySQL: refuse to serve an outdated schema."""
    head = db.head_revision(settings.database_url)
    current = await _revision(settings)
    if settings.embedded:
        if current != head:
            await asyncio.to_thread(db.migrate, settings.database_url)
            verb = "created" if current is None else "upgraded"
            log.info(
                "%s the embedded schema (revision %s) at %s", verb, head, settings.database_url
            )
        return
    if current is None or current in db.older_revisions(settings.database_url):
        raise ConfigError(
            f"database schema is at {current}, the hub needs {head}: run `python -m hub migrate`"
        )
    if current != head:  # ahead: a newer version migrated it (a rolling upgrade)
        log.warning("database schema is at %s, newer than this hub's %s", current, head)


async def metrics(request: Request[State]) -> Response:
    """Prometheus metrics of this process (scrape every process; keep it off the public side
    of the load balancer)."""
    return Response(request.state["hub"].metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@asynccontextmanager
async def _draining_on_sigterm(hub: Hub, registry: Registry) -> AsyncIterator[None]:
    """On SIGTERM: report not ready at once (`/ready` answers 503, new WebSockets are sent
    away 1012), close the open WebSockets 1012 spread over HUB_DRAIN_SECONDS, each after its
    command in flight; then hand over to uvicorn's own shutdown, which stops accepting and
    finishes the requests in flight. A second SIGTERM skips the wait. (Signals are the main
    thread's: a hub served in another thread, as in tests, has no handler.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    leaving: list[asyncio.Task[None]] = []

    def hand_over(frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signal.SIGTERM, frame)  # uvicorn's: stop accepting, finish, shut down
        else:
            signal.raise_signal(signal.SIGTERM)

    async def drain(frame: FrameType | None) -> None:
        await ws.drain(registry, hub.settings.drain_seconds)
        hand_over(frame)

    def on_term(sig: int, frame: FrameType | None) -> None:
        if hub.draining.is_set():
            hand_over(frame)
            return
        hub.draining.set()
        log.info("SIGTERM: not ready; closing WebSockets over %g s", hub.settings.drain_seconds)
        leaving.append(loop.create_task(drain(frame), name="hub-drain"))

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is on_term:
            signal.signal(signal.SIGTERM, previous)
        for task in leaving:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def create_app(settings: Settings, *, clock: Clock = utcnow) -> Starlette:
    """The hub as an ASGI app; its lifespan opens and closes every resource."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        logs.hold_back_floods()  # uvicorn has set up its handlers by now
        logs.keep_secrets_out()
        await prepare_schema(settings)
        async with open_hub(settings, clock=clock) as hub:
            registry = Registry()
            async with _draining_on_sigterm(hub, registry):
                yield {"hub": hub, "connections": registry}

    table: list[BaseRoute] = [*routes(ENDPOINTS), *docs.routes(ENDPOINTS)]
    table.append(Route("/metrics", metrics, include_in_schema=False))
    table.extend(health.ROUTES)
    table.append(WebSocketRoute("/ws", ws.endpoint))
    if STATIC.is_dir():
        table.append(Mount("/", StaticFiles(directory=STATIC, html=True), name="static"))
    middleware = [Middleware(RequestContext)]  # outermost: ids for every line and answer
    if settings.allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            )
        )
    return Starlette(
        routes=table,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
