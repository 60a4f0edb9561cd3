from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from starlette.datastructures import Headers
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from hub import protocol
from hub.errors import HubError, Unauthenticated
from hub.protocol import Close
from hub.runtime import Hub
from hub.state import Registry, State
from hub.ws.commands import ready
from hub.ws.connection import (
    Connection,
    NotText,
    RateLimited,
    ResyncFailed,
    close,
    receive_text,
)
from hub.ws.queue import TooSlow

log = logging.getLogger("hub.ws")
AUTH_TIMEOUT = 5.0
MAX_CONNECTIONS = 10  # per user, per process
TEXT_ONLY = "JSON text frames only"


async def endpoint(websocket: WebSocket[State]) -> None:
    """`/ws`: check the origin before accepting, authenticate with the first message, then
    serve commands and forward events until either side ends."""
    hub = websocket.state["hub"]
    registry = websocket.state["connections"]
    if not _origin_allowed(websocket, hub.settings.allowed_origins):
        await close(hub, websocket, Close.POLICY)  # before accept: the handshake is refused (403)
        return
    await websocket.accept()
    if hub.draining.is_set():  # leaving: go to another process
        await close(hub, websocket, Close.RESTART, "server restart: reconnect")
        return
    try:
        connection = await _authenticate(hub, websocket)
        if connection is None:
            return
        if hub.draining.is_set():
            await close(hub, websocket, Close.RESTART, "server restart: reconnect")
            return
        _forget_handshake(websocket)
        if not registry.add(connection.principal, connection, MAX_CONNECTIONS):
            await close(hub, websocket, Close.RATE_LIMITED, "too many connections for this user")
            return
        hub.metrics.sessions.inc()
        try:
            await _serve(connection)
        finally:
            hub.metrics.sessions.dec()
            registry.remove(connection.principal, connection)
            await connection.close_subscriptions()
    except WebSocketDisconnect:
        return
    except NotText:
        await close(hub, websocket, Close.POLICY, TEXT_ONLY)
    except Exception:  # never let one escape: the client would see a bare 1006
        log.exception("WebSocket connection failed")
        if websocket.application_state is not WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await close(hub, websocket, Close.INTERNAL, "internal error")


async def _authenticate(hub: Hub, websocket: WebSocket[State]) -> Connection | None:
    try:
        async with asyncio.timeout(AUTH_TIMEOUT):
            text = await receive_text(websocket)
    except TimeoutError:
        await close(hub, websocket, Close.AUTH_TIMEOUT, "authenticate first")
        return None
    try:
        command = protocol.parse(text)
        if command["type"] != "auth":
            raise Unauthenticated("the first message must be auth")
        principal, expires = hub.tokens.decode(command["token"])
        principal = await hub.standings.ensure(principal)
    except HubError as exc:
        await close(hub, websocket, Close.UNAUTHENTICATED, exc.detail[:120])
        return None
    connection = Connection(hub, websocket, principal, expires)
    reply = ready(principal, expires)
    if "ref" in command:
        reply["ref"] = command["ref"]
    await websocket.send_text(protocol.dump(reply))
    return connection


async def _serve(connection: Connection) -> None:
    try:
        await connection.serve()
        if connection.leaving:  # the process is draining: reconnect (to another one)
            await _close_after_queued(connection, Close.RESTART, "server restart: reconnect")
    except* WebSocketDisconnect:
        pass
    except* TooSlow:
        await _close_after_queued(connection, Close.TRY_AGAIN_LATER, "too slow: resync")
    except* ResyncFailed:
        await _close_after_queued(connection, Close.TRY_AGAIN_LATER, "resync failed: watch again")
    except* RateLimited:
        await _close_after_queued(connection, Close.RATE_LIMITED, "rate limited")
    except* NotText:
        await _close_after_queued(connection, Close.POLICY, TEXT_ONLY)


async def _close_after_queued(connection: Connection, code: Close, reason: str) -> None:
    # What is still queued (replies, the error saying why) goes first, then the close frame;
    # both wait behind what the client has not read: give them a moment.
    with contextlib.suppress(Exception):
        async with asyncio.timeout(10):
            await connection.outgoing.flush(connection.websocket.send_text)
            await close(connection.hub, connection.websocket, code, reason)


async def drain(registry: Registry, seconds: float) -> None:
    """Close every open connection 1012 for a restart, spread evenly over `seconds` so that
    their clients do not all reconnect in the same instant, each once its command in flight
    is answered; return when all have ended (or `seconds` and a grace have passed)."""
    connections = [c for c in registry.all() if isinstance(c, Connection)]
    random.shuffle(connections)
    spread = seconds * 0.8 / max(len(connections), 1)
    for connection in connections:
        connection.leave()
        await asyncio.sleep(spread)
    with contextlib.suppress(TimeoutError):  # a client that never reads: the exit goes on
        async with asyncio.timeout(seconds * 0.2 + 5):
            await registry.emptied()


def _origin_allowed(websocket: WebSocket[State], allowed: tuple[str, ...]) -> bool:
    headers = Headers(scope=websocket.scope)  # not `websocket.headers`: that one is kept
    origin = headers.get("origin")
    if origin is None:  # not a browser: scripts and services carry a token instead
        return True
    scheme = "https" if websocket.scope.get("scheme") == "wss" else "http"
    return origin in (f"{scheme}://{headers.get('host', '')}", *allowed)


def _forget_handshake(websocket: WebSocket[State]) -> None:
    # The handshake's headers were read (the origin, before accepting) and are not read
    # again; the scope, which the session keeps to its end (uvicorn's protocol, Starlette's
    # WebSocket and the log context share the one dict), lets go of them: ~1 KiB a session.
    websocket.scope["headers"] = []
