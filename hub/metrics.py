from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Buckets for request and command latency, in seconds: a booking is tens of milliseconds.
LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The hub's Prometheus metrics, on a registry of their own (one per running hub, so tests
    and several apps in one process never share counters). Each process exposes its own at
    `/metrics`; Prometheus adds them up across processes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
            "hub_ws_sessions", "Authenticated WebSocket sessions open", registry=self.registry
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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
