from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from hub import __version__, protocol

REF = "#/components/schemas/{model}"


def _event(name: str, description: str, required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {"type": {"const": name}, "ref": {"type": "string"}, **properties},
        "required": ["type", *required],
    }


ANY = {"type": "object"}
TIME = {"type": "string", "format": "date-time"}
ID = {"type": "integer"}
SLOT = {
    "type": "object",
    "properties": {"start": TIME, "end": TIME, "state": {"enum": ["free", "held", "booked"]}},
}
SERVER_MESSAGES: dict[str, dict[str, Any]] = {
    "ready": _event("ready", "Authenticated", ["user", "expires_at"], user=ANY, expires_at=TIME),
    "snapshot": _event(
        "snapshot",
        "Every slot in the watched range and the doctor's version",
        ["doctor_id", "version", "slots"],
        doctor_id=ID,
        version=ID,
        timezone={"type": "string"},
        slots={"type": "array", "items": SLOT},
    ),
    "resynced": _event(
        "resynced",
        "The missed slot events were sent",
        ["doctor_id", "version"],
        doctor_id=ID,
        version=ID,
    ),
    "unwatched": _event("unwatched", "No more events of that doctor", ["doctor_id"], doctor_id=ID),
    "held": _event(
        "held",
        "The slot is held for you",
        ["hold_id", "expires_at"],
        hold_id={"type": "string"},
        doctor_id=ID,
        start=TIME,
        expires_at=TIME,
    ),
    "released": _event("released", "The hold is released", ["hold_id"], hold_id={"type": "string"}),
    "booked": _event(
        "booked", "Booked", ["appointment"], appointment=ANY, replayed={"type": "boolean"}
    ),
    "cancelled": _event("cancelled", "Cancelled", ["appointment"], appointment=ANY),
    "rescheduled": _event("rescheduled", "Moved", ["appointment"], appointment=ANY),
    "pong": _event("pong", "Answer to ping", []),
    "slot": _event(
        "slot",
        "A slot of a watched doctor changed (no patient identity); versions rise by one",
        ["doctor_id", "start", "state", "version"],
        doctor_id=ID,
        start=TIME,
        state={"enum": ["free", "held", "booked"]},
        version=ID,
        collapsed={"type": "boolean", "description": "Newer than a state you were not sent"},
    ),
    "hours": _event(
        "hours",
        "The doctor's hours changed (takes a version like a slot event): watch again",
        ["doctor_id", "version"],
        doctor_id=ID,
        version=ID,
    ),
    "appointment": _event(
        "appointment",
        "One of your appointments changed (to its doctor and its patient only)",
        ["event", "appointment_id", "doctor_id", "patient_id", "start", "status"],
        event={"enum": ["booked", "cancelled", "rescheduled", "completed", "no_show"]},
        appointment_id=ID,
        doctor_id=ID,
        patient_id=ID,
        patient_name={"type": "string"},
        start=TIME,
        status={"type": "string"},
    ),
    "error": _event(
        "error",
        "A command failed; the connection stays open",
        ["code", "message"],
        code={"type": "string"},
        message={"type": "string"},
        fields={"type": "array"},
    ),
}
CLIENT_MESSAGES = {
    "auth": protocol.Auth,
    "watch": protocol.Watch,
    "unwatch": protocol.Unwatch,
    "hold": protocol.HoldCommand,
    "release": protocol.Release,
    "book": protocol.Book,
    "cancel": protocol.Cancel,
    "reschedule": protocol.Reschedule,
    "ping": protocol.Ping,
}


def document() -> dict[str, Any]:
    """The AsyncAPI 3 description of /ws, from the same types the server parses with."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name, kind in CLIENT_MESSAGES.items():
        schema = TypeAdapter[Any](kind).json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        messages[name] = {"name": name, "payload": schema}
    for name, schema in SERVER_MESSAGES.items():
        messages[name] = {"name": name, "payload": schema}
    refs = {name: {"$ref": f"#/components/messages/{name}"} for name in messages}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "hub WebSocket",
            "version": __version__,
            "description": (protocol.__doc__ or "").strip(),
        },
        "servers": {"hub": {"host": "localhost:8000", "protocol": "ws"}},
        "channels": {
            "ws": {
                "address": "/ws",
                "messages": refs,
            }
        },
        "operations": {
            "command": {
                "action": "receive",
                "channel": {"$ref": "#/channels/ws"},
                "messages": [
                    {"$ref": f"#/channels/ws/messages/{name}"} for name in CLIENT_MESSAGES
                ],
            },
            "event": {
                "action": "send",
                "channel": {"$ref": "#/channels/ws"},
                "messages": [
                    {"$ref": f"#/channels/ws/messages/{name}"} for name in SERVER_MESSAGES
                ],
            },
        },
        "components": {"messages": messages, "schemas": schemas},
    }
