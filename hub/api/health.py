from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.health import OK, UNCONFIGURED, UNKNOWN
from hub.state import State

NO_STORE = {"Cache-Control": "no-store"}


async def health(request: Request[State]) -> Response:
    """The process is alive: answered at once, without asking the database or Redis."""
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


async def ready(request: Request[State]) -> Response:
    """Whether the balancer may send this process work: 200 when the database and Redis
    answer and the schema is at the newest migration, 503 naming the part that does not (or
    `draining` once the process is leaving)."""
    hub = request.state["hub"]
    if hub.draining.is_set():
        return JSONResponse({"status": "draining"}, status_code=503, headers=NO_STORE)
    checks = await hub.readiness.check()
    for part, found in asdict(checks).items():  # for the alert on a part not ready
        if found not in (UNCONFIGURED, UNKNOWN):
            hub.metrics.ready.labels(part).set(1 if found == OK else 0)
    status, code = ("ready", 200) if checks.ready else ("unavailable", 503)
    return JSONResponse(
        {"status": status, "checks": asdict(checks)}, status_code=code, headers=NO_STORE
    )


# Plain routes, like /metrics: outside the OpenAPI document and the request metrics.
ROUTES = [
    Route("/health", health, include_in_schema=False),
    Route("/ready", ready, include_in_schema=False),
]
