from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0))


@dataclass
class Series:
    """One operation's samples: when each started (wall clock) and how long it took."""

    starts: array[float] = field(default_factory=lambda: array("d"))
    latencies: array[float] = field(default_factory=lambda: array("d"))

    def add(self, start: float, latency: float) -> None:
        self.starts.append(start)
        self.latencies.append(latency)

    def extend(self, other: Series) -> None:
        self.starts.extend(other.starts)
        self.latencies.extend(other.latencies)

    def __len__(self) -> int:
        return len(self.latencies)


@dataclass
class Tally:
    """What one load process (or the coordinator) saw; tallies of several processes merge."""

    series: dict[str, Series] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    values: Counter[str] = field(default_factory=Counter)
    appointments: list[int] = field(default_factory=list)
    arrivals: list[tuple[str, float, float | None]] = field(default_factory=list)
    cpu: float = 0.0

    def record(self, op: str, start: float, latency: float, outcome: str | None = None) -> None:
        self.series.setdefault(op, Series()).add(start, latency)
        if outcome is not None:
            self.outcomes[f"{op} {outcome}"] += 1

    def merge(self, other: Tally) -> None:
        for op, series in other.series.items():
            self.series.setdefault(op, Series()).extend(series)
        self.outcomes.update(other.outcomes)
        self.closes.update(other.closes)
        self.values.update(other.values)
        self.appointments.extend(other.appointments)
        self.arrivals.extend(other.arrivals)
        self.cpu += other.cpu

    def count(self, op: str, outcome: str | None = None) -> int:
        """How many `op` ended with `outcome` (any outcome when None)."""
        if outcome is not None:
            return self.outcomes[f"{op} {outcome}"]
        return sum(n for key, n in self.outcomes.items() if key.split(" ", 1)[0] == op)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def describe(series: Series, elapsed: float) -> dict[str, float]:
    """Count, rate over `elapsed` seconds and latency percentiles (seconds) of a series."""
    ordered = sorted(series.latencies)
    figures: dict[str, float] = {
        "count": len(ordered),
        "rate": len(ordered) / elapsed if elapsed > 0 else 0.0,
        "mean": sum(ordered) / len(ordered) if ordered else 0.0,
    }
    for name, q in PERCENTILES:
        figures[name] = percentile(ordered, q)
    figures["max"] = ordered[-1] if ordered else 0.0
    return figures


def timeline(series: Series, origin: float, width: float) -> list[dict[str, Any]]:
    """Per bin of `width` seconds after `origin`: the completions per second and their p99,
    binned by when each operation ended."""
    bins: dict[int, list[float]] = {}
    for start, latency in zip(series.starts, series.latencies, strict=True):
        bins.setdefault(int((start + latency - origin) // width), []).append(latency)
    if not bins:
        return []
    return [
        {
            "t": (n + 1) * width,
            "rate": len(bins.get(n, ())) / width,
            "p99": percentile(sorted(bins[n]), 99.0) if n in bins else None,
        }
        for n in range(min(bins), max(bins) + 1)
    ]


def bin_width(elapsed: float) -> float:
    """About 40 bins over a run, never under 0.25 s."""
    return max(0.25, round(elapsed / 40, 2))
