from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message

from hub.auth import Principal
from hub.errors import HubError, InvalidInput, PayloadTooLarge, Unauthenticated
from hub.runtime import Hub

log = logging.getLogger("hub.api")
Model = TypeVar("Model", bound=BaseModel)
MAX_BODY = 64 * 1024
PATH_PARAM = re.compile(r"{(\w+)(?::(\w+))?}")  # {name} or {name:converter}


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: the hub, the caller, the path and query, and the parsed body."""

    hub: Hub
    principal: Principal | None
    request: Request
    body: Any = None

    def path_int(self, name: str) -> int:
        value = self.request.path_params[name]
        assert isinstance(value, int)
        return value

    def query(self, model: type[Model]) -> Model:
        try:
            return model.model_validate(dict(self.request.query_params))
        except ValidationError as exc:
            raise invalid(exc, "query parameters are invalid") from exc


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One REST operation: its route, its handler, and what OpenAPI says about it."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    response: Any = None
    body: type[BaseModel] | None = None
    form: bool = False
    status: int = 200
    auth: bool = True
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = field(default=())

    @property
    def template(self) -> str:
        """The path as OpenAPI writes it: `{id}`, not `{id:int}`."""
        return PATH_PARAM.sub(r"{\1}", self.path)

    def route(self) -> Route:
        serve = functools.partial(self._serve, self.template)  # the metrics label, made once
        return Route(self.path, serve, methods=[self.method], name=self.handler.__name__)

    async def _serve(self, template: str, request: Request) -> Response:
        hub: Hub = request.app.state.hub
        started = time.perf_counter()
        response = await self._answer(hub, request)
        hub.metrics.requests.labels(self.method, template, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    async def _answer(self, hub: Hub, request: Request) -> Response:
        try:
            call = Call(hub, _principal(hub, request), request)
            if self.body is not None:
                raw = await _payload(request, self.form)
                try:
                    call = Call(hub, call.principal, request, self.body.model_validate(raw))
                except ValidationError as exc:
                    raise invalid(exc, "the request body is invalid") from exc
            result = await self.handler(call)
        except HubError as exc:
            hub.metrics.errors.labels("rest", exc.code).inc()
            return error_response(exc)
        if self.status == 204:
            return Response(status_code=204)
        content = TypeAdapter(self.response).dump_python(result, mode="json")
        return JSONResponse(content, status_code=self.status)


def invalid(exc: ValidationError, detail: str) -> InvalidInput:
    fields = [
        {"field": ".".join(str(p) for p in error["loc"]) or "body", "message": error["msg"]}
        for error in exc.errors(include_url=False, include_input=False)
    ]
    return InvalidInput(detail, fields)


def error_response(exc: HubError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.payload(), status_code=exc.status, headers=headers)


def _principal(hub: Hub, request: Request) -> Principal | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("use 'Authorization: Bearer <token>'")
    principal, _expires = hub.tokens.decode(token.strip())
    return principal


async def _payload(request: Request, form: bool) -> Any:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise PayloadTooLarge(f"bodies are limited to {MAX_BODY} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise PayloadTooLarge(f"bodies are limited to {MAX_BODY} bytes")
    if form and not request.headers.get("content-type", "").startswith("application/json"):

        async def replay() -> Message:
            return {"type": "http.request", "body": raw, "more_body": False}

        async with Request(request.scope, replay).form(max_files=0, max_fields=16) as data:
            return {key: value for key, value in data.items() if isinstance(value, str)}
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        problem = [{"field": "body", "message": str(exc)}]
        raise InvalidInput("the request body is not valid JSON", problem) from exc


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in the hub's error shape."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return JSONResponse(
        {"error": codes.get(exc.status_code, "http_error"), "detail": str(exc.detail)},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def server_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected: logged with its trace, answered without one."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    hub: Hub | None = getattr(request.app.state, "hub", None)
    if hub is not None:
        hub.metrics.errors.labels("rest", "internal").inc()
    return JSONResponse({"error": "internal", "detail": "internal server error"}, status_code=500)
