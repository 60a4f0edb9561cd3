from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from hub import __version__, asyncapi
from hub.api.endpoint import Endpoint
from hub.schemas import ErrorOut

REF = "#/components/schemas/{model}"
REASONS = {
    401: "Not signed in, or the token is invalid or expired",
    403: "Signed in, but not allowed to do this",
    404: "No such resource",
    409: "Conflicts with the current state",
    410: "The link was used, or what it names changed, or it expired",
    413: "Body too large",
    422: "Invalid input: `fields` names each problem",
    429: "Too many attempts: wait the seconds `Retry-After` says",
    503: "A backing service is unavailable",
}
SECURITY = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    **{
        f"{role}Password": {
            "type": "oauth2",
            "flows": {"password": {"tokenUrl": f"/{role}s/login", "scopes": {}}},
        }
        for role in ("patient", "doctor", "admin")
    },
}
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hub API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>"""
INIT = """window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui",
  deepLinking: true, validatorUrl: null, persistAuthorization: true});"""


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def of(self, tp: Any, mode: str) -> dict[str, Any]:
        schema = TypeAdapter(tp).json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
        self.components.update(schema.pop("$defs", {}))
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            self.components[tp.__name__] = schema
            return {"$ref": REF.format(model=tp.__name__)}
        return schema


def openapi(endpoints: list[Endpoint[Any, Any]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every REST endpoint."""
    schemas = _Schemas()
    error = schemas.of(ErrorOut, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        path = endpoint.template
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": schema}
            for name, schema in endpoint.path_params().items()
        ] + [
            {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "schema": p.schema,
                "description": p.description,
            }
            for p in endpoint.query
        ]
        operation: dict[str, Any] = {
            "operationId": endpoint.handler.__name__,
            "summary": endpoint.summary,
            "tags": [endpoint.tag],
            "parameters": parameters,
            "security": [
                {"bearer": []},
                *({f"{r}Password": []} for r in ("patient", "doctor", "admin")),
            ]
            if endpoint.auth
            else [{}, {"bearer": []}],
            "responses": {
                str(endpoint.status): {
                    "description": "No content" if endpoint.status == 204 else "Success",
                    **(
                        {
                            "content": {
                                endpoint.media: {
                                    "schema": schemas.of(endpoint.response, "serialization")
                                }
                            }
                        }
                        if endpoint.status != 204
                        else {}
                    ),
                },
                **{
                    str(code): {
                        "description": REASONS[code],
                        "content": {"application/json": {"schema": error}},
                    }
                    for code in sorted({*endpoint.errors, *((401,) if endpoint.auth else ())})
                },
                "default": {
                    "description": "Unexpected error",
                    "content": {"application/json": {"schema": error}},
                },
            },
        }
        if endpoint.body is not None:
            body = schemas.of(endpoint.body, "validation")
            media = (
                ["application/x-www-form-urlencoded", "application/json"]
                if endpoint.form
                else ["application/json"]
            )
            operation["requestBody"] = {
                "required": endpoint.body_required,
                "content": {kind: {"schema": body} for kind in media},
            }
        paths.setdefault(path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hub",
            "version": __version__,
            "description": "Real-time appointment scheduling for clinics. Errors are "
            '`{"error": code, "detail": message}`; 422 adds `fields`.',
        },
        "paths": paths,
        "components": {"schemas": schemas.components, "securitySchemes": SECURITY},
    }


def routes(endpoints: list[Endpoint[Any, Any]]) -> list[BaseRoute]:
    """`/openapi.json`, and Swagger UI at `/docs` from the files installed with it."""
    document = openapi(endpoints)

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(document)

    asyncapi_document = asyncapi.document()

    async def asyncapi_json(request: Request) -> JSONResponse:
        url = request.url  # the Host the request came to (and the scheme a proxy forwarded)
        secure = url.scheme in ("https", "wss")
        return JSONResponse(asyncapi.served_at(asyncapi_document, url.netloc, secure))

    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    async def init(request: Request) -> HTMLResponse:
        return HTMLResponse(INIT, media_type="text/javascript")

    spec = importlib.util.find_spec("swagger_ui")  # its files only; importing it is not needed
    assert spec is not None and spec.origin is not None
    assets = Path(spec.origin).parent / "static"
    return [
        Route("/openapi.json", openapi_json, include_in_schema=False),
        Route("/asyncapi.json", asyncapi_json, include_in_schema=False),
        Route("/docs", docs, include_in_schema=False),
        Route("/docs/init.js", init, include_in_schema=False),
        Mount("/docs/static", StaticFiles(directory=assets), name="swagger"),
    ]
