from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub import audit
from hub.api.endpoint import Call, Endpoint, Param
from hub.auth import Role
from hub.schemas import AuditOut, UTCInstant


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor_role: Role | None = None
    actor_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    action: str | None = Field(default=None, max_length=40)
    resource: str | None = Field(default=None, max_length=60)
    outcome: str | None = Field(default=None, max_length=40)
    since: UTCInstant | None = Field(default=None, alias="from")
    until: UTCInstant | None = Field(default=None, alias="to")
    limit: int = Field(default=100, ge=1, le=1000)


async def read_audit(call: Call[None]) -> list[AuditOut]:
    where = call.query(AuditQuery)
    rows = await call.hub.audit.read(
        call.principal, audit.Filter(**where.model_dump(exclude_none=True))
    )
    return [AuditOut.model_validate(row) for row in rows]


ENDPOINTS: list[Endpoint[Any, Any]] = [
    Endpoint(
        "GET",
        "/audit",
        read_audit,
        summary="The audit trail, newest first (admins)",
        tag="audit",
        response=list[AuditOut],
        errors=(401, 403, 422),
        query=(
            Param("actor_role", {"type": "string", "enum": [r.value for r in Role]}),
            Param("actor_id", {"type": "integer", "minimum": 1}),
            Param("action", {"type": "string", "maxLength": 40}, "e.g. patient.read"),
            Param("resource", {"type": "string", "maxLength": 60}, "e.g. patient:12"),
            Param("outcome", {"type": "string", "maxLength": 40}, "ok, or the refusal's code"),
            Param("from", {"type": "string", "format": "date-time"}, "at or after"),
            Param("to", {"type": "string", "format": "date-time"}, "before"),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 100"),
        ),
    ),
]
