from __future__ import annotations

import os
from typing import Any

from hub.loadtest.ceilings import KINDS
from hub.loadtest.plan import Plan, operations
from hub.loadtest.run import Outcome, Result
from hub.loadtest.stats import describe

LATENCIES = ("p50", "p95", "p99", "max")
FIGURES = ("rate", "p50", "p99", "max")


def ops(outcome: Outcome) -> dict[str, dict[str, float]]:
    return {
        name: describe(series, outcome.elapsed) for name, series in outcome.tally.series.items()
    }


def resources(outcome: Outcome, plan: Plan) -> dict[str, Any]:
    """The target's CPU per operation and memory per session, from its samples."""
    before, after = outcome.samples.get("before"), outcome.samples.get("after")
    peak = outcome.samples.get("peak", after)
    figures: dict[str, Any] = {"source": before.source if before else "unavailable"}
    if before is None or after is None or peak is None:
        return figures
    done = operations(plan, outcome.tally)
    if before.cpu is not None and after.cpu is not None:
        cpu = after.cpu - before.cpu
        figures["cpu_seconds"] = cpu
        figures["cpu_ms_per_op"] = 1000 * cpu / done if done else None
        figures["cores_busy"] = cpu / outcome.elapsed
    if before.rss is not None and peak.rss is not None and after.rss is not None:
        figures["rss_mib"] = {
            "before": before.rss / 2**20,
            "peak": peak.rss / 2**20,
            "after": after.rss / 2**20,
        }
        sessions = outcome.tally.values.get(plan.sessions or "", 0)
        if sessions:
            figures["kib_per_session"] = (peak.rss - before.rss) / 1024 / sessions
    if peak.sessions is not None:
        figures["hub_ws_sessions"] = peak.sessions
    return figures


def _fraction(hub: float, ceiling: float, higher_is_better: bool) -> float | None:
    if hub <= 0 or ceiling <= 0:  # nothing measured, or memory that fell
        return None
    return hub / ceiling if higher_is_better else ceiling / hub


def fractions(result: Result) -> list[dict[str, Any]]:
    """Each hub figure beside its ceiling's; the fraction is of the ceiling, so 1 means
    the hub runs at the ceiling (for latencies and memory: ceiling / hub)."""
    rows: list[dict[str, Any]] = []
    hub_ops, plan = ops(result.hub), result.plan

    def row(kind: str, op: str, figure: str, hub: float, bare: float, higher: bool) -> None:
        rows.append(
            {
                "ceiling": kind,
                "op": op,
                "figure": figure,
                "hub": hub,
                "ceiling_value": bare,
                "fraction": _fraction(hub, bare, higher),
            }
        )

    for kind, outcome in result.ceilings.items():
        bare_ops = ops(outcome)
        for op in (n for n in hub_ops if n in bare_ops and plan.primary in (n, "*")):
            for figure in FIGURES:
                row(kind, op, figure, hub_ops[op][figure], bare_ops[op][figure], figure == "rate")
        if plan.settle:
            row(kind, "all", "elapsed", result.hub.elapsed, outcome.elapsed, False)
        hub_mem = resources(result.hub, plan).get("kib_per_session")
        bare_mem = resources(outcome, plan).get("kib_per_session")
        if hub_mem and bare_mem:
            row(kind, "session", "KiB", hub_mem, bare_mem, False)
    return rows


def summarize(result: Result) -> dict[str, Any]:
    """Everything a run found, as JSON-ready data (latencies in seconds)."""
    options, hub = result.options, result.hub
    cores = os.cpu_count() or 1
    return {
        "scenario": options.scenario,
        "url": options.url,
        "procs": options.procs,
        "clients": options.clients,
        "facts": result.plan.facts,
        "setup_seconds": result.setup_seconds,
        "elapsed_seconds": hub.elapsed,
        "ok": result.ok,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in result.checks],
        "ops": ops(hub),
        "outcomes": dict(sorted(hub.tally.outcomes.items())),
        "closes": dict(sorted(hub.tally.closes.items())),
        "values": dict(hub.tally.values),
        "hub": resources(hub, result.plan),
        "load_generator": {
            "cpu_seconds": hub.tally.cpu,
            "cores_busy": hub.tally.cpu / hub.elapsed,
            "of_machine": hub.tally.cpu / hub.elapsed / cores,
            "cores": cores,
        },
        "ceilings": {
            kind: {
                "what": KINDS[kind],
                "elapsed_seconds": outcome.elapsed,
                "ops": ops(outcome),
                "outcomes": dict(sorted(outcome.tally.outcomes.items())),
                "server": resources(outcome, result.plan),
            }
            for kind, outcome in result.ceilings.items()
        },
        "fractions": fractions(result),
        "notes": result.notes,
    }
