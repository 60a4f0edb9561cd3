from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import logging.config
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from hub import __version__, accounts, collector, db, logformat
from hub.app import create_app, prepare_schema
from hub.auth import Passwords
from hub.config import Settings, load_settings
from hub.errors import ConfigError, EmailTaken
from hub.listener import Listener, Session
from hub.workers import Workers

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# How `serve` runs uvicorn's WebSocket side; the tests serve with the same options.
WEBSOCKET_OPTIONS: dict[str, Any] = {
    # uvicorn's websockets sans-I/O protocol, made leaner (hub.listener.Session). Measured
    # per idle authenticated session (`python -m hub.loadtest idle -c 3000`, one worker, RSS):
    # this subclass 21.8 KiB; uvicorn's own sans-I/O 30.4 KiB; `wsproto` 28.6 KiB (and not a
    # dependency); the legacy `websockets` 37.6 KiB (a keepalive, a transfer and a close task
    # and a stream reader per connection). The sans-I/O one is also uvicorn's default, the
    # one its maintainers keep.
    "ws": Session,
    "ws_max_size": 64 * 1024,  # larger frames are closed with 1009
    "ws_per_message_deflate": False,  # ~15-30 KiB per connection instead of ~130 KiB
    "ws_ping_interval": 20.0,  # a peer that stops answering pings is dropped within 40 s
    "ws_ping_timeout": 20.0,
}


def app() -> Starlette:
    """The hub on this process's environment: what each worker of `serve --workers N`
    imports, since uvicorn starts workers from an import string."""
    settings = load_settings()
    listener(settings)  # each worker's own protocol limits
    return _served(settings)


def _served(settings: Settings) -> Starlette:
    """The app a serving process runs, built, and everything built so far frozen out of the
    garbage collector's sight, which collects at the configured thresholds from here on."""
    built = create_app(settings)
    collector.tune(settings.gc_thresholds)
    return built


def listener(settings: Settings) -> type[Listener]:
    """The HTTP protocol class `serve` runs, with this hub's limits (uvicorn builds one per
    connection); the tests serve with it too."""
    trusted = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")  # as uvicorn reads it
    Listener.header_timeout = settings.header_timeout
    Listener.max_per_address = settings.max_sockets_per_address
    Listener.trusted = frozenset(ip.strip() for ip in trusted.split(",") if ip.strip())
    return Listener


def _workers(settings: Settings, args: argparse.Namespace) -> int:
    workers = int(args.workers or settings.workers)  # --workers wins over HUB_WORKERS
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if workers > 1 and (settings.embedded or settings.redis_url is None):
        raise ConfigError(
            "several workers need MySQL and Redis: the embedded lock and bus live in one process"
        )
    return workers


@contextmanager
def _metrics_directory() -> Iterator[None]:
    # prometheus-client's multiprocess mode: every worker keeps its samples in files of this
    # directory, so one scrape, whichever worker answers it, can add them all up. It must be
    # empty at start (stale files would count twice) and belongs to this serve alone.
    given = os.environ.get(MULTIPROC_DIR)
    directory = Path(given) if given else Path(tempfile.mkdtemp(prefix="hub-metrics-"))
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_DIR] = str(directory)  # read by prometheus-client in each worker
    try:
        yield
    finally:
        if not given:
            shutil.rmtree(directory, ignore_errors=True)


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    workers = _workers(settings, args)
    asyncio.run(prepare_schema(settings))  # refuse before binding the port, with a plain message
    options: dict[str, Any] = {
        "host": args.host or settings.host,
        "port": args.port or settings.port,
        "log_level": settings.log_level,
        "log_config": logformat.log_config(settings),  # text or JSON lines, access log too
        "proxy_headers": True,
        "lifespan": "on",
        "http": listener(settings),
        **WEBSOCKET_OPTIONS,
    }
    if workers == 1:
        uvicorn.run(_served(settings), **options)
        return
    with _metrics_directory():
        config = uvicorn.Config("hub.__main__:app", factory=True, workers=workers, **options)
        Workers(config).run()


def _migrate(settings: Settings, args: argparse.Namespace) -> None:
    db.migrate(settings.database_url)
    print(f"schema at revision {db.head_revision(settings.database_url)}")


Create = Callable[[db.SessionFactory, Passwords, str], Awaitable[Any]]


def _create_account(settings: Settings, role: str, email: str, create: Create) -> None:
    # create-admin and create-staff: the password from HUB_<ROLE>_PASSWORD or a prompt, the
    # schema brought up to date, the account made.
    password = os.environ.get(f"HUB_{role.upper()}_PASSWORD") or getpass.getpass("password: ")
    if len(password) < 8:
        raise ConfigError(f"the {role} password needs at least 8 characters")
    db.migrate(settings.database_url)

    async def run() -> int:
        engine = db.create_engine(settings.database_url)
        try:
            passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib)
            row = await create(db.session_factory(engine), passwords, password)
            return int(row.id)
        finally:
            await engine.dispose()

    print(f"{role} {email} created with id {asyncio.run(run())}")


def _create_admin(settings: Settings, args: argparse.Namespace) -> None:
    _create_account(
        settings,
        "admin",
        args.email,
        lambda sessions, passwords, password: accounts.create_admin(
            sessions, passwords, args.email, password
        ),
    )


def _create_staff(settings: Settings, args: argparse.Namespace) -> None:
    names = (args.first_name, args.last_name)
    _create_account(
        settings,
        "staff",
        args.email,
        lambda sessions, passwords, password: accounts.create_staff(
            sessions, passwords, args.email, password, names
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub", description="The clinic scheduling hub")
    parser.add_argument("--version", action="version", version=f"hub {__version__}")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="serve HTTP and WebSocket (the default)")
    serve.add_argument("--host", help="bind address (HUB_HOST)")
    serve.add_argument("--port", type=int, help="port (HUB_PORT)")
    serve.add_argument(
        "--workers", type=int, help="processes sharing the port (MySQL and Redis only; default 1)"
    )
    serve.set_defaults(run=_serve)
    commands.add_parser("migrate", help="bring the database schema up to date").set_defaults(
        run=_migrate
    )
    admin = commands.add_parser(
        "create-admin", help="create an admin (password from HUB_ADMIN_PASSWORD or a prompt)"
    )
    admin.add_argument("--email", required=True)
    admin.set_defaults(run=_create_admin)
    staff = commands.add_parser(
        "create-staff",
        help="create a front-desk account (password from HUB_STAFF_PASSWORD or a prompt)",
    )
    staff.add_argument("--email", required=True)
    staff.add_argument("--first-name", default="Front")
    staff.add_argument("--last-name", default="Desk")
    staff.set_defaults(run=_create_staff)
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in {*commands.choices, "-h", "--help", "--version"}:
        argv = ["serve", *argv]
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=logformat.TEXT)
    try:
        settings = load_settings()
        logging.config.dictConfig(logformat.log_config(settings))  # migrate's lines too
        args.run(settings, args)
    except (ConfigError, EmailTaken) as exc:
        print(f"hub: {exc.detail}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
