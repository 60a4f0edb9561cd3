from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.convertors import Convertor, FloatConvertor, IntegerConvertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, compile_path
from starlette.types import Message, Receive, Scope, Send

from hub import logs
from hub.auth import Principal
from hub.errors import (
    HubError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
    Unavailable,
    fields_of,
    problem,
)
from hub.runtime import Hub, is_outage
from hub.state import State

log = logging.getLogger("hub.api")
Body = TypeVar("Body", bound=BaseModel | None)
Model = TypeVar("Model", bound=BaseModel)
Out = TypeVar("Out")
Serve = Callable[[Request[State]], Awaitable[Response]]
MAX_BODY = 64 * 1024
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_ID = 2**31 - 1
# What the services call a concept, the REST API calls by the original design's name.
FIELD_NAMES = {"start": "scheduled_datetime"}
ACTED = "hub.acted"  # the request scope's key of what audit_as says


@dataclass(frozen=True, slots=True)
class Call(Generic[Body]):
    """What a handler gets: the hub, the caller, the request, and the parsed body."""

    hub: Hub
    principal: Principal | None
    request: Request[State]
    body: Body
    # What the answer sets besides its body: Set-Cookie arguments (Response.set_cookie).
    cookies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def address(self) -> str:
        """The client's address as uvicorn gives it (a trusted proxy's forwarded one)."""
        client = self.request.client
        return client.host if client is not None else "unknown"

    def path_int(self, name: str) -> int:
        value = self.request.path_params[name]
        assert isinstance(value, int)
        if value > MAX_ID:  # past the columns' range: no such row
            raise NotFound(f"no {name} {value}")
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
    is the type the handler's result is serialised as (`Out`, or what it validates into); a
    handler that answers in another format than JSON returns a Response of `media`."""

    method: str
    path: str
    handler: Callable[[Call[Body]], Awaitable[Out]]
    _: KW_ONLY
    summary: str
    tag: str
    response: Any = None
    body: type[BaseModel] | None = None
    body_required: bool = True  # False: an empty body reads as `{}`
    form: bool = False
    media: str = "application/json"
    status: int = 200
    auth: bool = True
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    # Audited (a patient's record or appointments): the action, and the resource as a
    # template of the path's parameters, e.g. ("patient.read", "patient:{id}").
    audit: tuple[str, str] | None = None

    @property
    def template(self) -> str:
        """The path as OpenAPI and the metrics write it: `{id}`, not `{id:int}`."""
        return compile_path(self.path)[1]

    def path_params(self) -> dict[str, dict[str, Any]]:
        """Each path parameter's JSON schema, from the route's own convertors."""
        return {name: _schema(kind) for name, kind in compile_path(self.path)[2].items()}

    def serve(self) -> Serve:
        adapter = TypeAdapter[Any](self.response)  # built once, not per request
        template = self.template

        async def serve(request: Request[State]) -> Response:
            hub = request.state["hub"]
            started = time.perf_counter()
            response = await self._answer(hub, request, adapter)
            response.headers["X-Request-ID"] = request_id(request)
            elapsed = time.perf_counter() - started
            hub.metrics.requests.labels(self.method, template, str(response.status_code)).observe(
                elapsed
            )
            return response

        return serve

    async def _answer(
        self, hub: Hub, request: Request[State], adapter: TypeAdapter[Any]
    ) -> Response:
        principal: Principal | None = None
        try:
            principal = await _principal(hub, request)
            body: Any = None
            if self.body is not None:
                raw = await _payload(request, self.form, self.body_required)
                try:
                    body = self.body.model_validate(raw)
                except ValidationError as exc:
                    raise invalid(exc, "the request body is invalid") from exc
            call = Call(hub, principal, request, body)
            result = await self.handler(call)
        except HubError as exc:
            hub.metrics.errors.labels("rest", exc.code).inc()
            self._audit(hub, request, principal, exc.code)
            return error_response(exc)
        except Exception as exc:
            if not is_outage(exc):
                raise  # a bug: a 500, logged with its trace
            log.warning("%s %s: %s", self.method, self.template, type(exc).__name__)
            hub.metrics.errors.labels("rest", Unavailable.code).inc()
            self._audit(hub, request, principal, Unavailable.code)
            return error_response(Unavailable("the database or Redis is not answering: retry"))
        self._audit(hub, request, principal, "ok")
        response: Response
        if isinstance(result, Response):
            response = result
        elif self.status == 204:
            response = Response(status_code=204)
        else:
            # JSON written by pydantic-core at once, not a dict of it then json.dumps.
            content = adapter.dump_json(result)
            response = Response(content, status_code=self.status, media_type="application/json")
        for cookie in call.cookies:
            response.set_cookie(**cookie)
        return response

    def _audit(
        self, hub: Hub, request: Request[State], caller: Principal | None, outcome: str
    ) -> None:
        if self.audit is not None:
            action, resource = self.audit
            where = resource.format(**request.path_params)
            acted: tuple[Principal, str] | None = request.scope.get(ACTED)
            if acted is not None:  # the handler learnt who acted on what (audit_as)
                caller, where = acted
            hub.audit.note(caller, action, where, outcome, "rest", request_id(request))


def audit_as(call: Call[Any], actor: Principal, resource: str) -> None:
    """Audit this request as `actor` acting on `resource`, where its path names neither
    (a link's token stands for an appointment and its patient, and is never written down)."""
    call.request.scope[ACTED] = (actor, resource)


def request_id(request: Request[State]) -> str:
    """The request's id: the caller's `X-Request-ID` when it is a sane token, else a new one
    (echoed in the answer, written in the audit trail)."""
    known = request.scope.get("request_id")
    if known is None:
        given = request.headers.get("x-request-id", "")
        known = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        request.scope["request_id"] = known
    return str(known)


def routes(endpoints: list[Endpoint[Any, Any]]) -> list[Route]:
    """One route per path, serving each of its methods. Any other method is a 405 naming
    those (a route per method would let the static files behind answer it, without `Allow`)."""
    by_path: dict[str, dict[str, Serve]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint.serve()
    return [Route(path, _Methods(serves)) for path, serves in by_path.items()]


class _Methods:
    # An ASGI app rather than a function, so the route matches every method.
    def __init__(self, serves: dict[str, Serve]) -> None:
        self._serves = {**serves, "HEAD": serves["GET"]} if "GET" in serves else serves
        self._allow = ", ".join(self._serves)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request: Request[State] = Request(scope, receive)
        serve = self._serves.get(request.method)
        if serve is None:
            raise HTTPException(405, headers={"Allow": self._allow})
        response = await serve(request)
        await response(scope, receive, send)


def _schema(convertor: Convertor[Any]) -> dict[str, Any]:
    if isinstance(convertor, IntegerConvertor):  # digits only: no sign
        return {"type": "integer", "minimum": 0, "maximum": MAX_ID}
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
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(error_body(exc), status_code=exc.status, headers=headers)


async def _principal(hub: Hub, request: Request[State]) -> Principal | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("use 'Authorization: Bearer <token>'")
    principal, _expires = hub.tokens.decode(token.strip())
    return await hub.standings.ensure(principal)  # a token outlives no account, no sign-out


async def _payload(request: Request[State], form: bool, required: bool = True) -> Any:
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
    if not raw and not required:
        return {}
    if not raw:
        raise InvalidInput("a JSON body is required", [{"field": "body", "message": "missing"}])
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
    path = logs.redact(request.url.path)
    log.exception("unhandled error on %s %s", request.method, path, exc_info=exc)
    hub = request.scope.get("state", {}).get("hub")
    if isinstance(hub, Hub):
        hub.metrics.errors.labels("rest", "internal").inc()
    return JSONResponse(
        {"error": "internal", "detail": "internal server error"},
        status_code=500,
        headers={"X-Request-ID": str(request.scope.get("request_id", ""))},  # past its echo
    )
