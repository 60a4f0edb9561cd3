from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

# What time it is: services, holds, the relay and the sweeper take one, so tests move time
# instead of sleeping.
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The real clock, in UTC."""
    return datetime.now(UTC)
