"""The shape of a log line: readable text, or one JSON object per line (`HUB_LOG_FORMAT`).

A JSON line always has `time` (ISO 8601, UTC), `level`, `logger` and `message`; and, when the
line is written while serving a request or a WebSocket connection, `request_id` or
`connection_id`, the `route` template, and once the answer is known its `status` and
`duration_ms`. uvicorn's access lines add `method` and `path` (as `hub.logs.Redact` left it).

What a line says comes from the request's `Context`, a context variable set by
`hub.api.context.RequestContext` as each request or connection starts: every line logged by
the code serving it, in any task it starts, carries it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub.config import Settings

TEXT = "%(levelname)s:     %(name)s: %(message)s"
LEVELS = {"trace": 5}  # uvicorn's; the others are logging's own names


@dataclass(slots=True)
class Context:
    """What the lines logged while serving one request or connection say about it."""

    request_id: str | None = None
    connection_id: str | None = None
    scope: MutableMapping[str, Any] = field(default_factory=dict)  # the ASGI scope, routed later
    status: int | None = None
    started: float = field(default_factory=time.perf_counter)
    _route: str | None = None

    @property
    def route(self) -> str | None:
        """The template of the route serving it (`/doctors/{id}`), once routed."""
        if self._route is None:
            self._route = _template(self.scope)
        return self._route


CURRENT: ContextVar[Context | None] = ContextVar("hub_log_context", default=None)


def _template(scope: MutableMapping[str, Any]) -> str | None:
    # Starlette's router writes the matched route's endpoint into the scope (the same dict
    # every layer below us sees); the route that holds it knows its template.
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return None
    for route in getattr(scope.get("router"), "routes", ()):
        if getattr(route, "endpoint", None) is endpoint:
            return str(route.path_format)
        if getattr(route, "app", None) is endpoint and hasattr(route, "routes"):  # a Mount
            return f"{route.path}/{{path}}"
    return None


class JsonLines(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = CURRENT.get()
        if context is not None:
            if context.request_id is not None:
                line["request_id"] = context.request_id
            if context.connection_id is not None:
                line["connection_id"] = context.connection_id
            if (route := context.route) is not None:
                line["route"] = route
            if context.status is not None:
                line["status"] = context.status
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            line["method"], line["path"], line["status"] = args[1], args[2], args[4]  # and
            # the client's address and the HTTP version, in the message
        if context is not None and "status" in line:
            line["duration_ms"] = round((time.perf_counter() - context.started) * 1000, 1)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's `log_config` for these settings: its loggers, the hub's and the root's, in
    JSON lines or in uvicorn's own text; the hub's at `HUB_LOG_LEVEL` as uvicorn's are."""
    as_json = settings.log_format == "json"
    if as_json:
        lines = {"()": "hub.logformat.JsonLines"}
        formatters = {"default": lines, "access": lines, "root": lines}
    else:
        formatters = {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
            },
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            },
            "root": {"format": TEXT},
        }
    level = LEVELS.get(settings.log_level.lower(), settings.log_level.upper())

    def handler(formatter: str, stream: str) -> dict[str, Any]:
        return {"formatter": formatter, "class": "logging.StreamHandler", "stream": stream}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": {
            "default": handler("default", "ext://sys.stderr"),
            # JSON: one stream, in order; text: as uvicorn's, the access lines on stdout
            "access": handler("access", "ext://sys.stderr" if as_json else "ext://sys.stdout"),
            "root": handler("root", "ext://sys.stderr"),
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "hub": {"level": level},
        },
        "root": {"handlers": ["root"], "level": "INFO"},
    }
