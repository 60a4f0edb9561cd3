from __future__ import annotations

from hub.ws.endpoint import AUTH_TIMEOUT, MAX_CONNECTIONS, drain, endpoint
from hub.ws.queue import MAX_PENDING
from hub.ws.watches import MAX_WATCHED

__all__ = ["AUTH_TIMEOUT", "MAX_CONNECTIONS", "MAX_PENDING", "MAX_WATCHED", "drain", "endpoint"]
