from __future__ import annotations

import asyncio
from typing import TypedDict

from hub.auth import Principal
from hub.runtime import Hub


class Registry:
    """The open WebSocket connections of this process, by user, to cap them per user."""

    def __init__(self) -> None:
        self._by_user: dict[Principal, set[object]] = {}
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, principal: Principal, connection: object, limit: int) -> bool:
        """Count a connection in; False (and not counted) when the user has `limit` already."""
        connections = self._by_user.setdefault(principal, set())
        if len(connections) >= limit:
            return False
        connections.add(connection)
        self._empty.clear()
        return True

    def all(self) -> list[object]:
        """Every open connection (to drain them on shutdown)."""
        return [c for connections in self._by_user.values() for c in connections]

    def remove(self, principal: Principal, connection: object) -> None:
        connections = self._by_user.get(principal)
        if connections is not None:
            connections.discard(connection)
            if not connections:
                del self._by_user[principal]
        if not self._by_user:
            self._empty.set()

    async def emptied(self) -> None:
        """Return once no connection is open."""
        await self._empty.wait()


class State(TypedDict):
    """What the lifespan hands every request and WebSocket (`request.state["hub"]`)."""

    hub: Hub
    connections: Registry
