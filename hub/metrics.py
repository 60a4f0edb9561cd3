from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Buckets for request and command latency, in seconds: a booking is tens of milliseconds.
LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Workers(Collector):
    """CPU and memory of every worker writing into the multiprocess directory, summed."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        pids = {int(p.stem.rsplit("_", 1)[-1]) for p in self._directory.glob("*_*.db")}
        cpu = memory = 0.0
        alive = 0
        for pid in sorted(pids):
            collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
            samples = [sample for family in collector.collect() for sample in family.samples]
            alive += bool(samples)
            for sample in samples:
                if sample.name == "process_cpu_seconds_total":
                    cpu += sample.value
                elif sample.name == "process_resident_memory_bytes":
                    memory += sample.value
        yield CounterMetricFamily("process_cpu_seconds", "CPU of every worker, seconds", cpu)
        yield GaugeMetricFamily("process_resident_memory_bytes", "RSS of every worker", memory)
        yield GaugeMetricFamily("hub_workers", "Worker processes alive", alive)


class Metrics:
    """The hub's Prometheus metrics, on a registry of their own (one per running hub, so tests
    and several apps in one process never share counters), with the process's CPU and memory.
    Under `serve --workers N` every worker writes its samples into one directory
    (prometheus-client's multiprocess mode) and a scrape, whichever worker answers it, adds
    them all up, process CPU and memory included."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        self._directory = multiprocess_dir
        if multiprocess_dir is None:
            ProcessCollector(registry=self.registry)
        self.requests = Histogram(
            "hub_http_request_duration_seconds",
            "REST requests by route template, method and status",
            ["method", "route", "status"],
            buckets=LATENCY,
            registry=self.registry,
        )
        self.errors = Counter(
            "hub_errors_total",
            "Refusals and failures by edge (rest, ws) and stable error code",
            ["edge", "code"],
            registry=self.registry,
        )
        self.commands = Histogram(
            "hub_ws_command_duration_seconds",
            "WebSocket commands by type and outcome (ok or the error code)",
            ["command", "outcome"],
            buckets=LATENCY,
            registry=self.registry,
        )
        self.sessions = Gauge(
            "hub_ws_sessions",
            "Authenticated WebSocket sessions open",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.closes = Counter(
            "hub_ws_closes_total",
            "WebSocket sessions the hub closed, by close code",
            ["code"],
            registry=self.registry,
        )
        self.published = Counter(
            "hub_events_published_total",
            "Outbox events published on the bus by this process",
            registry=self.registry,
        )
        self.lapsed = Counter(
            "hub_holds_lapsed_total",
            "Lapsed holds this process announced free again",
            registry=self.registry,
        )
        # The relay sets these on each look for leftovers (every 2 s); every process sees the
        # same outbox, so a scrape of several workers reports the largest.
        self.outbox_lag = Gauge(
            "hub_outbox_lag_seconds",
            "Age of the oldest outbox event not yet marked published (0: none)",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.outbox_unpublished = Gauge(
            "hub_outbox_unpublished",
            "Outbox events not yet marked published",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        # Set by the readiness check (/ready), per part: database, redis, schema; 1 fine, 0 not.
        # Draining is not a part: a process leaving on purpose pages nobody.
        self.ready = Gauge(
            "hub_ready",
            "1 when this process's last readiness check found the part fine, 0 when not",
            ["part"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )

    def exposition(self) -> bytes:
        if self._directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self._directory))  # type: ignore[no-untyped-call]
        registry.register(Workers(self._directory))
        return generate_latest(registry)

    def close(self) -> None:
        """This process is leaving: its live gauges stop counting."""
        if self._directory is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self._directory))  # type: ignore[no-untyped-call]
