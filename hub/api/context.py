from __future__ import annotations

import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.endpoint import REQUEST_ID
from hub.logformat import CURRENT, Context


class RequestContext:
    """Gives every request its id (the caller's `X-Request-ID` when it is a sane token, else a
    new one) and every WebSocket connection one of its own, for each line logged while serving
    it; every HTTP answer echoes the request id, 404s and static files included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            CURRENT.set(Context(connection_id=uuid.uuid4().hex, scope=scope))
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope["request_id"] = request_id  # what hub.api.endpoint.request_id reads
        context = Context(request_id=request_id, scope=scope)
        # Not reset after: uvicorn serves each request in a task of its own, so the value
        # ends with it, and the lines written after this returns (a 500 from Starlette's
        # outermost middleware, the access line) still carry it.
        CURRENT.set(context)

        async def echo(message: Message) -> None:
            if message["type"] == "http.response.start":
                context.status = message["status"]
                headers = MutableHeaders(scope=message)
                if "x-request-id" not in headers:
                    headers["X-Request-ID"] = request_id
            await send(message)

        await self.app(scope, receive, echo)
