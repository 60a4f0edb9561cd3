from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.convertors import Convertor, FloatConvertor, IntegerConvertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, compile_path
from starlette.types import Message

from hub.auth import Principal
from hub.errors import HubError, InvalidInput, PayloadTooLarge, Unauthenticated, fields_of, problem
from hub.runtime import Hub
from hub.state import State

log = logging.getLogger("hub.api")
Body = TypeVar("Body", bound=BaseModel | None)
Model = TypeVar("Model", bound=BaseModel)
Out = TypeVar("Out")
MAX_BODY = 64 * 1024
# What the services call a concept, the REST API calls by the original design's name.
FIELD_NAMES = {"start": "scheduled_datetime"}


@dataclass(frozen=True, slots=True)
class Call(Generic[Body]):
    """What a handler gets: the hub, the caller, the request, and the parsed body."""

    hub: Hub
    principal: Principal | None
    request: Request[State]
    body: Body

    def path_int(self, name: str) -> int:
        value = self.request.path_params[name]
        assert isinstance(value, int)
        return value

    def query(self, model: type[Model]) -> Model:
        try:
            return model.model_validate(dict(self.request.query_params))
        except ValidationError as exc:
            raise invalid(exc, "query parameters are invalid") from exc


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Endpoint(Generic[Body, Out]):
    """One REST operation: its route, its handler, and what OpenAPI says about it. `response`
    is the type the handler's result is serialised as (`Out`, or what it validates into)."""

    method: str
    path: str
    handler: Callable[[Call[Body]], Awaitable[Out]]
    _: KW_ONLY
    summary: str
    tag: str
    response: Any = None
    body: type[BaseModel] | None = None
    form: bool = False
    status: int = 200
    auth: bool = True
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()

    @property
    def template(self) -> str:
        """The path as OpenAPI and the metrics write it: `{id}`, not `{id:int}`."""
        return compile_path(self.path)[1]

    def path_params(self) -> dict[str, dict[str, str]]:
        """Each path parameter's JSON schema, from the route's own convertors."""
        return {name: _schema(kind) for name, kind in compile_path(self.path)[2].items()}

    def route(self) -> Route:
        adapter = TypeAdapter[Any](self.response)  # built once, not per request
        template = self.template

        async def serve(request: Request[State]) -> Response:
            hub = request.state["hub"]
            started = time.perf_counter()
            response = await self._answer(hub, request, adapter)
            elapsed = time.perf_counter() - started
            hub.metrics.requests.labels(self.method, template, str(response.status_code)).observe(
                elapsed
            )
            return response

        return Route(self.path, serve, methods=[self.method], name=self.handler.__name__)

    async def _answer(
        self, hub: Hub, request: Request[State], adapter: TypeAdapter[Any]
    ) -> Response:
        try:
            principal = _principal(hub, request)
            body: Any = None
            if self.body is not None:
                raw = await _payload(request, self.form)
                try:
                    body = self.body.model_validate(raw)
                except ValidationError as exc:
                    raise invalid(exc, "the request body is invalid") from exc
            result = await self.handler(Call(hub, principal, request, body))
        except HubError as exc:
            hub.metrics.errors.labels("rest", exc.code).inc()
            return error_response(exc)
        if self.status == 204:
            return Response(status_code=204)
        return JSONResponse(adapter.dump_python(result, mode="json"), status_code=self.status)


def _schema(convertor: Convertor[Any]) -> dict[str, str]:
    if isinstance(convertor, IntegerConvertor):
        return {"type": "integer"}
    if isinstance(convertor, FloatConvertor):
        return {"type": "number"}
    return {"type": "string"}


def invalid(exc: ValidationError, detail: str) -> InvalidInput:
    return InvalidInput(detail, fields_of(exc, "body"))


def error_body(exc: HubError) -> dict[str, Any]:
    """A HubError as the REST body: `{"error", "detail"}`, with `fields` and `reason` when
    the error has them."""
    facts = problem(exc, FIELD_NAMES)
    body: dict[str, Any] = {"error": facts.code, "detail": facts.detail}
    if facts.fields is not None:
        body["fields"] = facts.fields
    if facts.reason is not None:
        body["reason"] = facts.reason
    return body


def error_response(exc: HubError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(error_body(exc), status_code=exc.status, headers=headers)


def _principal(hub: Hub, request: Request[State]) -> Principal | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("use 'Authorization: Bearer <token>'")
    principal, _expires = hub.tokens.decode(token.strip())
    return principal


async def _payload(request: Request[State], form: bool) -> Any:
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
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        fields = [{"field": "body", "message": str(exc)[:200]}]
        raise InvalidInput("the request body is not valid JSON", fields) from exc


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
    hub = request.scope.get("state", {}).get("hub")
    if isinstance(hub, Hub):
        hub.metrics.errors.labels("rest", "internal").inc()
    return JSONResponse({"error": "internal", "detail": "internal server error"}, status_code=500)
