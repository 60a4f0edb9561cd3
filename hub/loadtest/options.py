from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

PASSWORD = "load-test-password"
DEFAULT_DURATION = 10.0  # seconds of throughput and clinic without --duration or --count
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Options:
    """One load run, as the command line gave it (each scenario reads what it needs)."""

    scenario: str
    url: str = "http://127.0.0.1:8000"
    procs: int = 2
    clients: int = 20  # contenders, concurrency, viewers, sessions or logins
    duration: float | None = None  # seconds (throughput, clinic)
    count: int | None = None  # operations (throughput)
    doctors: int = 4
    bookings: int = 20  # fanout
    interval: float = 0.2  # fanout: seconds between bookings
    hold: float = 1.0  # storm, idle: seconds the sessions are held
    per_account: int = 8  # WebSocket sessions per patient (the hub allows 10 per process)
    pingers: int = 20  # logins: live sessions timing ping round trips
    think: float = 1.0  # clinic: scale of the pauses between a person's actions
    slot_minutes: int = 5
    password: str = PASSWORD
    admin_email: str | None = None  # approves the load doctors on a hub that vets doctors
    admin_password: str | None = None
    database_url: str | None = None
    ceiling: bool = False
    ceiling_database: str = "hub_ceiling"
    ceiling_pool: int = 40  # the hub's engine: pool_size 20 + max_overflow 20
    argon2_time_cost: int = 3  # the logins ceiling hashes at this cost (the hub's default)
    argon2_memory_kib: int = 65536
    timeout: float = 300.0  # no run lasts longer than this
    report: Path | None = None
    tokens: Path | None = None  # keep sign-ins between runs in this file
    seed: int = 1

    def share(self, total: int, index: int) -> int:
        """Process `index`'s share of `total` (the first ones take the remainder)."""
        return total // self.procs + (1 if index < total % self.procs else 0)

    def split(self, items: list[T]) -> list[list[T]]:
        """`items` dealt over the processes, in order, as `share` counts them."""
        shares, start = [], 0
        for index in range(self.procs):
            end = start + self.share(len(items), index)
            shares.append(items[start:end])
            start = end
        return shares
