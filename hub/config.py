from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from starlette.config import Config
from starlette.datastructures import CommaSeparatedStrings

from hub.errors import ConfigError

SECRET_FILE = "secret.key"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the hub reads from its environment, read once and passed in."""

    database_url: str
    secret_key: str = field(repr=False)
    redis_url: str | None = None
    redis_cluster: bool = False
    token_ttl: int = 3600
    allowed_origins: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("hub-data")
    redis_timeout: float = 0.5
    hold_ttl: int = 120
    offer_ttl: int = 900  # seconds a waitlist offer holds its slot for the patient
    max_holds: int = 3
    max_address_holds: int = 6  # live holds per client address, all its accounts (0: no cap)
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    password_workers: int = 0  # argon2 checks at once (0: one per CPU)
    password_queue: int = 64  # checks waiting for a worker; past that, 503 overloaded
    login_failures: int = 10  # per account and address in login_window, then answers slow down
    login_address_failures: int = 50  # per address, any account
    login_account_failures: int = 100  # per account, from addresses that have failed on it
    login_window: int = 900  # seconds
    login_backoff: int = 1  # the first wait past a threshold (s), doubling with each failure
    registrations: int = 10  # per client address in registration_window (0: unthrottled)
    registration_window: int = 3600  # seconds
    log_level: str = "info"
    log_format: str = "text"  # "json": one object per line (the default on MySQL)
    approve_doctors: bool = True  # a self-registered doctor waits for an admin's approval
    max_sockets_per_address: int = 64  # sockets before their request, per peer address
    header_timeout: float = 10.0  # seconds a socket has to send a request's headers
    refresh_days: int = 14  # a sign-in lasts this long unused (each use renews it)
    workers: int = 1
    metrics_dir: Path | None = None  # prometheus-client's multiprocess directory (workers)
    token_issuer: str = "hub"
    token_audience: str = "hub"
    # Notifications (hub.notices): SMTP, or .eml files under <data_dir>/mail without it.
    smtp_url: str | None = field(default=None, repr=False)  # may carry a password
    mail_from: str = "Clinic hub <hub@localhost>"
    clinic_name: str = "Clinic hub"
    public_url: str = ""  # where links in messages point (default: http://host:port)
    reminders: tuple[int, ...] = (1440, 120)  # minutes before the start
    quiet_hours: tuple[int, int] = (21, 8)  # no reminder from 21:00 to 08:00, patient's zone
    sms_dir: Path | None = None  # reminders also as SMS, written here (a provider plugs in)
    require_verified_email: bool = False  # a patient books only once their email is verified
    drain_seconds: float = 10.0  # on SIGTERM: WebSockets closed 1012 spread over this long
    gc_thresholds: tuple[int, int, int] = (10_000, 20, 100)  # a serving process's (hub.collector)

    @property
    def embedded(self) -> bool:
        """True when the hub runs on SQLite with the in-process lock and bus."""
        return self.database_url.startswith("sqlite")


def _metrics_dir(environ: Mapping[str, str]) -> Path | None:
    # Set by `serve --workers N` for its workers (prometheus-client reads the same variable).
    directory = environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(directory) if directory else None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read `HUB_*` variables into a Settings; generate the embedded secret on first use."""
    config = Config(environ=dict(os.environ if environ is None else environ), env_prefix="HUB_")
    data_dir = Path(config("DATA_DIR", default="hub-data"))
    database_url = config("DATABASE_URL", default=f"sqlite+aiosqlite:///{data_dir / 'hub.sqlite3'}")
    secret = config("SECRET_KEY", default=None)
    embedded = database_url.startswith("sqlite")
    if not secret:
        if not embedded:
            raise ConfigError("HUB_SECRET_KEY must be set when the hub runs on MySQL")
        secret = _embedded_secret(data_dir)
    if len(secret) < 32:
        raise ConfigError("HUB_SECRET_KEY must be at least 32 characters")
    try:
        return Settings(
            database_url=database_url,
            secret_key=secret,
            redis_url=config("REDIS_URL", default=None) or None,
            redis_cluster=config("REDIS_CLUSTER", cast=bool, default=False),
            token_ttl=config("TOKEN_TTL", cast=int, default=3600),
            allowed_origins=tuple(
                config("ALLOWED_ORIGINS", cast=CommaSeparatedStrings, default="")
            ),
            host=config("HOST", default="127.0.0.1"),
            port=config("PORT", cast=int, default=8000),
            data_dir=data_dir,
            redis_timeout=config("REDIS_TIMEOUT", cast=float, default=0.5),
            hold_ttl=config("HOLD_TTL", cast=int, default=120),
            offer_ttl=config("OFFER_TTL", cast=int, default=900),
            max_holds=config("MAX_HOLDS", cast=int, default=3),
            max_address_holds=config("MAX_ADDRESS_HOLDS", cast=int, default=6),
            argon2_time_cost=config("ARGON2_TIME_COST", cast=int, default=3),
            argon2_memory_kib=config("ARGON2_MEMORY_KIB", cast=int, default=65536),
            password_workers=config("PASSWORD_WORKERS", cast=int, default=0),
            password_queue=config("PASSWORD_QUEUE", cast=int, default=64),
            login_failures=config("LOGIN_FAILURES", cast=int, default=10),
            login_address_failures=config("LOGIN_ADDRESS_FAILURES", cast=int, default=50),
            login_account_failures=config("LOGIN_ACCOUNT_FAILURES", cast=int, default=100),
            login_window=config("LOGIN_WINDOW", cast=int, default=900),
            login_backoff=config("LOGIN_BACKOFF", cast=int, default=1),
            registrations=config("REGISTRATIONS", cast=int, default=10),
            registration_window=config("REGISTRATION_WINDOW", cast=int, default=3600),
            approve_doctors=config("APPROVE_DOCTORS", cast=bool, default=True),
            max_sockets_per_address=config("MAX_SOCKETS_PER_ADDRESS", cast=int, default=64),
            header_timeout=config("HEADER_TIMEOUT", cast=float, default=10.0),
            refresh_days=config("REFRESH_DAYS", cast=int, default=14),
            workers=config("WORKERS", cast=int, default=1),
            metrics_dir=_metrics_dir(os.environ if environ is None else environ),
            log_level=config("LOG_LEVEL", default="info"),
            log_format=_log_format(config("LOG_FORMAT", default="text" if embedded else "json")),
            smtp_url=config("SMTP_URL", default=None) or None,
            mail_from=config("MAIL_FROM", default="Clinic hub <hub@localhost>"),
            clinic_name=config("CLINIC_NAME", default="Clinic hub"),
            public_url=config("PUBLIC_URL", default="").rstrip("/"),
            reminders=_minutes(config("REMINDERS", default="24h,2h")),
            sms_dir=Path(sms) if (sms := config("SMS_DIR", default="")) else None,
            require_verified_email=config("REQUIRE_VERIFIED_EMAIL", cast=bool, default=False),
            drain_seconds=config("DRAIN_SECONDS", cast=float, default=10.0),
            gc_thresholds=_thresholds(config("GC_THRESHOLDS", default="10000,20,100")),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _log_format(text: str) -> str:
    if text not in ("json", "text"):
        raise ValueError(f"HUB_LOG_FORMAT: {text!r} is neither json nor text")
    return text


def _thresholds(text: str) -> tuple[int, int, int]:
    """HUB_GC_THRESHOLDS: "10000,20,100" -> the collector's three thresholds (gc.set_threshold)."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 3 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ValueError(f"HUB_GC_THRESHOLDS: {text!r} is not three positive whole numbers")
    young, middle, old = (int(part) for part in parts)
    return young, middle, old


def _minutes(text: str) -> tuple[int, ...]:
    """HUB_REMINDERS: "24h,2h" or "90m" -> minutes before the start, largest first."""
    found = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        unit = {"h": 60, "m": 1, "d": 1440}.get(part[-1])
        if unit is None or not part[:-1].isdigit() or int(part[:-1]) == 0:
            raise ValueError(f"HUB_REMINDERS: {part!r} is not like 24h, 90m or 2d")
        found.append(int(part[:-1]) * unit)
    return tuple(sorted(set(found), reverse=True))


def _embedded_secret(data_dir: Path) -> str:
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Write it whole under a temporary name, then link it into place: a second process
        # starting at the same moment either wins the link or reads the winner's secret.
        fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=".secret-")
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(48))
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    return path.read_text().strip()
