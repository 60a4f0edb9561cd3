from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hub.loadtest.run import Outcome, Result
from hub.loadtest.stats import bin_width, timeline

MS = 1000.0
STYLE = "body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px}pre{background:#f4f4f4}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * MS:.1f}"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def tables(summary: dict[str, Any]) -> list[Table]:
    """The summary as rich tables: operations, the ceilings, outcomes, resources, checks."""
    title = f"{summary['scenario']} against {summary['url']} ({summary['procs']} load processes)"
    ops = Table(title=title)
    for column in ("operation", "count", "rate /s", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        ops.add_column(column, justify="left" if column == "operation" else "right")
    for name, f in summary["ops"].items():
        ops.add_row(
            name,
            f"{f['count']:.0f}",
            _number(f["rate"]),
            *(_ms(f[p]) for p in ("p50", "p95", "p99", "max")),
        )
    result = [ops]
    if summary["fractions"]:
        ceilings = Table(title="beside the ceilings (fraction of the ceiling: 1 = at it)")
        for column in ("ceiling", "operation", "figure", "hub", "ceiling value", "fraction"):
            ceilings.add_column(
                column, justify="left" if column in ("ceiling", "operation", "figure") else "right"
            )
        for row in summary["fractions"]:
            latency = row["figure"] in ("p50", "p95", "p99", "max")
            show = _ms if latency else _number
            ceilings.add_row(
                row["ceiling"],
                row["op"],
                row["figure"] + (" ms" if latency else ""),
                show(row["hub"]),
                show(row["ceiling_value"]),
                _number(row["fraction"]),
            )
        result.append(ceilings)
    facts = Table(title="outcomes and resources", show_header=False)
    facts.add_column("what")
    facts.add_column("value")
    facts.add_row("outcomes", ", ".join(f"{k}: {v}" for k, v in summary["outcomes"].items()) or "-")
    facts.add_row(
        "closes by the hub", ", ".join(f"{k}: {v}" for k, v in summary["closes"].items()) or "none"
    )
    hub = summary["hub"]
    cpu, per_op = _number(hub.get("cpu_seconds")), _number(hub.get("cpu_ms_per_op"))
    facts.add_row("hub CPU", f"{cpu} s, {per_op} ms per operation ({hub['source']})")
    if "rss_mib" in hub:
        rss = hub["rss_mib"]
        memory = f"{rss['before']:.1f} -> {rss['peak']:.1f} -> {rss['after']:.1f} MiB"
        if "kib_per_session" in hub:
            memory += f", {hub['kib_per_session']:.1f} KiB per session"
        facts.add_row("hub memory", memory)
    own = summary["load_generator"]
    facts.add_row(
        "load generator CPU",
        f"{own['cpu_seconds']:.1f} s, {own['cores_busy']:.2f} of {own['cores']} cores busy",
    )
    facts.add_row(
        "setup, run", f"{summary['setup_seconds']:.1f} s, {summary['elapsed_seconds']:.2f} s"
    )
    for note in summary["notes"]:
        facts.add_row("note", note)
    result.append(facts)
    checks = Table(title="checks")
    checks.add_column("")
    checks.add_column("check")
    checks.add_column("found")
    for check in summary["checks"]:
        checks.add_row(
            "[green]ok[/]" if check["ok"] else "[red]FAILED[/]", check["name"], check["detail"]
        )
    result.append(checks)
    return result


def show(summary: dict[str, Any], console: Console) -> None:
    for table in tables(summary):
        console.print(table)


def write_json(summary: dict[str, Any], console: Console) -> None:
    console.print_json(json.dumps(summary))


def _targets(result: Result) -> list[tuple[str, Outcome]]:
    return [("hub", result.hub), *((f"ceiling: {k}", o) for k, o in result.ceilings.items())]


def write_html(result: Result, summary: dict[str, Any], path: Path) -> None:
    """One self-contained page: the latency distribution of each operation and the rate
    and p99 over time, for the hub and beside it each ceiling (plotly, its script inline)."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    palette = qualitative.Plotly

    titles = ("latency distribution (ms)", "completions per second", "p99 latency (ms) over time")
    figure = make_subplots(rows=3, cols=1, subplot_titles=titles, vertical_spacing=0.08)
    width = bin_width(result.hub.elapsed)
    traces = [
        (t, o, op, series) for t, o in _targets(result) for op, series in o.tally.series.items()
    ]
    for n, (target, outcome, op, series) in enumerate(traces):
        name, colour = f"{target} {op}", palette[n % len(palette)]
        line = {"dash": "solid" if target == "hub" else "dash", "color": colour}
        latencies = [x * MS for x in series.latencies]
        histogram = go.Histogram(
            x=latencies, name=name, legendgroup=name, histnorm="percent", opacity=0.6
        )
        figure.add_trace(histogram.update(marker={"color": colour}), row=1, col=1)
        points = timeline(series, outcome.go_at, width)
        times = [p["t"] for p in points]
        rates = [p["rate"] for p in points]
        p99 = [None if p["p99"] is None else p["p99"] * MS for p in points]
        for row, values in ((2, rates), (3, p99)):
            trace = go.Scatter(x=times, y=values, name=name, legendgroup=name, showlegend=False)
            figure.add_trace(trace.update(line=line), row=row, col=1)
    figure.update_layout(barmode="overlay", height=1100, title="ceilings dashed")
    figure.update_yaxes(title_text="% of operations", row=1, col=1)
    figure.update_xaxes(title_text="seconds since go", row=3, col=1)
    charts = figure.to_html(full_html=False, include_plotlyjs=True)
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(x)}</td>"
            for x in ("ok" if c["ok"] else "FAILED", c["name"], c["detail"])
        )
        + "</tr>"
        for c in summary["checks"]
    )
    title = f"{summary['scenario']} against {summary['url']}"
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>hub load test: {html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>"
        f"<table><tr><th></th><th>check</th><th>found</th></tr>{rows}</table>{charts}"
        f"<h2>summary</h2><pre>{html.escape(json.dumps(summary, indent=2))}</pre></body></html>"
    )
    path.write_text(page, encoding="utf-8")
