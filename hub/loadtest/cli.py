"""`python -m hub.loadtest SCENARIO`: load a running hub and report what it did.

    python -m hub.loadtest contention --url http://127.0.0.1:8000 -c 100
    python -m hub.loadtest throughput -c 50 --duration 30 --ceiling --database-url mysql+aiomysql://...
    python -m hub.loadtest fanout -c 500 --bookings 50 --report fanout.html

Scenarios: contention (N clients, one slot: exactly one 201), throughput (distinct slots at
concurrency C), fanout (V viewers, a booking every 0.2 s), storm (V viewers connect at once),
idle (as many sessions as the hub holds), logins (L concurrent logins, pings timed meanwhile),
clinic (browse, watch, hold, book, cancel, reschedule). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn

from hub.loadtest import report
from hub.loadtest.crew import WorkerFailed
from hub.loadtest.options import DEFAULT_DURATION, PASSWORD, Options
from hub.loadtest.population import SetupFailed
from hub.loadtest.run import SCENARIOS, Result, run
from hub.loadtest.summary import summarize

CLIENTS = {
    "contention": 100,
    "throughput": 50,
    "fanout": 200,
    "storm": 1000,
    "idle": 5000,
    "logins": 50,
    "clinic": 200,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hub.loadtest",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the hub")
    p.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="load processes")
    p.add_argument(
        "-c",
        "--clients",
        "--viewers",
        "--sessions",
        "--logins",
        dest="clients",
        type=int,
        help="contenders, concurrency, viewers, sessions or logins; per scenario: "
        + ", ".join(f"{k} {v}" for k, v in CLIENTS.items()),
    )
    p.add_argument("--duration", type=float, help="seconds (throughput, clinic; default 10)")
    p.add_argument("--count", type=int, help="bookings in all (throughput, instead of --duration)")
    p.add_argument(
        "--doctors", type=int, default=4, help="load doctors (bookings are spread over them)"
    )
    p.add_argument("--bookings", type=int, default=20, help="fanout: bookings the viewers watch")
    p.add_argument("--interval", type=float, default=0.2, help="fanout: seconds between bookings")
    p.add_argument(
        "--hold", type=float, default=1.0, help="storm, idle: seconds to hold the sessions"
    )
    p.add_argument(
        "--per-account",
        type=int,
        default=8,
        help="WebSocket sessions per patient account (the hub allows 10)",
    )
    p.add_argument("--pingers", type=int, default=20, help="logins: live sessions timing pings")
    p.add_argument("--think", type=float, default=1.0, help="clinic: scale of people's pauses")
    p.add_argument(
        "--slot-minutes", type=int, default=5, choices=(5, 15), help="the load doctors' slot length"
    )
    p.add_argument("--password", default=PASSWORD, help="of every load account")
    p.add_argument(
        "--admin-email",
        help="an admin who approves the load doctors, where the hub vets doctors "
        "(HUB_APPROVE_DOCTORS; the password from HUB_ADMIN_PASSWORD)",
    )
    p.add_argument(
        "--database-url",
        help="the hub's database, to check for double booking (mysql+aiomysql://... or sqlite+aiosqlite://...)",
    )
    p.add_argument("--ceiling", action="store_true", help="also run the scenario's ceilings")
    p.add_argument(
        "--ceiling-database",
        default="hub_ceiling",
        help="scratch database of the transaction ceiling (dropped after)",
    )
    p.add_argument(
        "--ceiling-pool",
        type=int,
        default=40,
        help="connections of the transaction ceiling (the hub's engine: 20 + 20 overflow)",
    )
    p.add_argument(
        "--argon2-time-cost",
        type=int,
        default=3,
        help="the logins ceiling's argon2 cost (set it to the hub's)",
    )
    p.add_argument("--argon2-memory-kib", type=int, default=65536)
    p.add_argument(
        "--timeout", type=float, default=300.0, help="the longest any run may take, seconds"
    )
    p.add_argument("--report", type=Path, help="write a self-contained HTML report here")
    p.add_argument(
        "--tokens",
        type=Path,
        help="keep the load accounts' sign-ins in this file between runs (skips the logins)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--seed", type=int, default=1)
    return p


def options_of(args: argparse.Namespace) -> Options:
    return Options(
        scenario=args.scenario,
        url=args.url.rstrip("/"),
        procs=max(1, args.procs),
        clients=args.clients or CLIENTS[args.scenario],
        duration=args.duration,
        count=args.count,
        doctors=max(1, args.doctors),
        bookings=args.bookings,
        interval=args.interval,
        hold=args.hold,
        per_account=max(1, args.per_account),
        pingers=args.pingers,
        think=args.think,
        slot_minutes=args.slot_minutes,
        password=args.password,
        admin_email=args.admin_email,
        admin_password=os.environ.get("HUB_ADMIN_PASSWORD"),
        database_url=args.database_url,
        ceiling=args.ceiling,
        ceiling_database=args.ceiling_database,
        ceiling_pool=args.ceiling_pool,
        argon2_time_cost=args.argon2_time_cost,
        argon2_memory_kib=args.argon2_memory_kib,
        timeout=args.timeout,
        report=args.report,
        tokens=args.tokens,
        seed=args.seed,
    )


async def _run(options: Options, console: Console) -> Result:
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[ops]} ops, {task.fields[rate]}/s, {task.fields[since]:.1f} s"),
    )
    # Runs of a duration show time on the bar; runs of a count, operations.
    seconds = options.duration or DEFAULT_DURATION
    with Progress(*columns, console=console) as progress:
        tasks: dict[str, TaskID] = {}

        def update(target: str, done: int, total: int | None, since: float) -> None:
            if target not in tasks:
                name = f"{options.scenario} on {target}"
                tasks[target] = progress.add_task(
                    name, total=total or seconds, ops=0, rate=0, since=0.0
                )
            rate = f"{done / since:,.0f}" if since > 0 else "0"
            completed = done if total else min(since, seconds)
            progress.update(tasks[target], completed=completed, ops=done, rate=rate, since=since)

        console.print(f"preparing {options.scenario} on {options.url} ...")
        return await run(options, update)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = options_of(args)
    console = Console(stderr=args.json)
    try:
        result = asyncio.run(_run(options, console))
    except (SetupFailed, WorkerFailed, OSError) as exc:
        console.print(f"[red]hub.loadtest: {exc}[/]")
        return 2
    summary = summarize(result)
    report.show(summary, console)
    if args.json:
        report.write_json(summary, Console())
    if options.report is not None:
        report.write_html(result, summary, options.report)
        console.print(f"report written to {options.report}")
    return 0 if result.ok else 1
