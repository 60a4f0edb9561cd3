from __future__ import annotations

from typing import Any, get_args

from pydantic import TypeAdapter

from hub import __version__, protocol

REF = "#/components/schemas/{model}"


CLIENT_MESSAGES = dict(zip(protocol.COMMANDS, get_args(protocol.Command), strict=True))
SERVER_MESSAGES = dict(zip(protocol.EVENTS, get_args(protocol.ServerMessage), strict=True))


def document() -> dict[str, Any]:
    """The AsyncAPI 3 description of /ws, from the same types the server parses with."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name, kind in {**CLIENT_MESSAGES, **SERVER_MESSAGES}.items():
        schema = TypeAdapter[Any](kind).json_schema(ref_template=REF, mode="serialization")
        schemas.update(schema.pop("$defs", {}))
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


def served_at(document: dict[str, Any], host: str, secure: bool) -> dict[str, Any]:
    """`document` naming the server a client reached it at: its Host, over ws or wss."""
    return {**document, "servers": {"hub": {"host": host, "protocol": "wss" if secure else "ws"}}}
