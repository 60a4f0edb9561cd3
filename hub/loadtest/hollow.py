from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from multiprocessing.process import BaseProcess
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from hub.loadtest.crew import SPAWN
from hub.loadtest.options import PASSWORD

Message = dict[str, Any]


@lru_cache(maxsize=64)
def _slots(first: str, last: str, minutes: int) -> list[Message]:
    start = datetime.combine(date.fromisoformat(first[:10]), datetime.min.time(), UTC)
    end = datetime.combine(date.fromisoformat(last[:10]), datetime.min.time(), UTC)
    step, slots = timedelta(minutes=minutes), []
    moment = start
    while moment < end + timedelta(days=1):
        text = moment.isoformat().replace("+00:00", "Z")
        slots.append({"start": text, "end": text, "state": "free"})
        moment += step
    return slots


def answer(message: Message, minutes: int) -> Message | None:
    """What the hollow hub says to a WebSocket command (None: nothing, for `broadcast`,
    which the caller handles)."""
    kind, ref = message.get("type"), message.get("ref")
    reply: Message
    if kind == "auth":
        reply = {"type": "ready", "user": {"role": "patient", "id": 1}, "expires_at": "-"}
    elif kind == "watch":
        slots = _slots(message["from"], message["to"], minutes)
        reply = {
            "type": "snapshot",
            "doctor_id": message["doctor_id"],
            "version": 0,
            "slots": slots,
        }
    elif kind == "unwatch":
        reply = {"type": "unwatched", "doctor_id": message["doctor_id"]}
    elif kind == "ping":
        reply = {"type": "pong"}
    else:
        return None
    return {**reply, "ref": ref} if ref else reply


def http_app(minutes: int, time_cost: int, memory_kib: int) -> Starlette:
    """The hub's routes with canned answers and no work behind them (logins hash at the
    given argon2 cost, in at most one thread per CPU, as the hub does): Starlette and
    uvicorn's own ceiling."""
    from argon2 import PasswordHasher, Type

    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, type=Type.ID)
    stored = hasher.hash(PASSWORD)
    limiter = anyio.CapacityLimiter(os.cpu_count() or 1)
    ids = itertools.count(1)

    async def created(request: Request) -> Response:
        await request.body()
        return JSONResponse({"id": next(ids), "hold_id": f"h{next(ids)}"}, status_code=201)

    async def changed(request: Request) -> Response:
        await request.body()
        return JSONResponse({"id": next(ids)})

    async def login(request: Request) -> Response:
        await request.form()
        await anyio.to_thread.run_sync(hasher.verify, stored, PASSWORD, limiter=limiter)
        return JSONResponse({"access_token": "hollow", "token_type": "bearer", "expires_in": 3600})

    async def listing(request: Request) -> Response:
        return JSONResponse([{"id": 1, "name": "Hollow"}])

    async def me(request: Request) -> Response:
        return JSONResponse({"id": 1})

    async def slots(request: Request) -> Response:
        first, last = request.query_params["from"], request.query_params["to"]
        return JSONResponse(
            {"doctor_id": 1, "timezone": "UTC", "slots": _slots(first, last, minutes)}
        )

    async def gone(request: Request) -> Response:
        return Response(status_code=204)

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                reply = answer(json.loads(await websocket.receive_text()), minutes)
                if reply is not None:
                    await websocket.send_text(json.dumps(reply))
        except WebSocketDisconnect:
            return

    return Starlette(
        routes=[
            Route("/patients/", created, methods=["POST"]),
            Route("/doctors/", created, methods=["POST"]),
            Route("/{role}s/login", login, methods=["POST"]),
            Route("/{role}s/me", me),
            Route("/specializations/", listing),
            Route("/doctors/{id}/availability", changed, methods=["PUT"]),
            Route("/doctors/{id}/slots", slots),
            Route("/appointments/", created, methods=["POST"]),
            Route("/appointments/holds", created, methods=["POST"]),
            Route("/appointments/holds/{id}", gone, methods=["DELETE"]),
            Route("/appointments/{id}/{action}", changed, methods=["PUT"]),
            WebSocketRoute("/ws", ws),
        ]
    )


def _serve_http(port: int, minutes: int, time_cost: int, memory_kib: int) -> None:
    import uvicorn

    from hub.__main__ import WEBSOCKET_OPTIONS

    app = http_app(minutes, time_cost, memory_kib)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", **WEBSOCKET_OPTIONS)


def _serve_ws(port: int, minutes: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    watchers: set[ServerConnection] = set()
    versions = itertools.count(1)

    async def handler(connection: ServerConnection) -> None:
        try:
            async for text in connection:
                message = json.loads(text)
                if message.get("type") == "broadcast":
                    event = {"type": "slot", "doctor_id": 1, "start": message["start"]}
                    event.update(state="booked", version=next(versions))
                    broadcast(watchers, json.dumps(event))
                    await connection.send(json.dumps({"type": "sent", "ref": message.get("ref")}))
                    continue
                if message.get("type") == "watch":
                    watchers.add(connection)
                await connection.send(json.dumps(answer(message, minutes)))
        finally:
            watchers.discard(connection)

    async def main() -> None:
        options: dict[str, Any] = {"compression": None, "max_size": 64 * 1024}
        async with serve(handler, "127.0.0.1", port, ping_interval=20, **options) as server:
            await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int, process: BaseProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the ceiling server did not start") from None
            time.sleep(0.05)


@contextmanager
def served(kind: str, *args: int) -> Iterator[tuple[str, int]]:
    """A hollow server in a process of its own: `http` (Starlette on uvicorn) or `ws` (a
    bare websockets server). Yields its URL and pid; stops it after."""
    port = free_port()
    target = _serve_http if kind == "http" else _serve_ws
    process = SPAWN.Process(target=target, args=(port, *args), daemon=True)
    process.start()
    try:
        _wait_for(port, process)
        assert process.pid is not None
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
