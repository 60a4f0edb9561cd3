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
    max_holds: int = 3
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    log_level: str = "info"
    workers: int = 1
    metrics_dir: Path | None = None  # prometheus-client's multiprocess directory (workers)
    token_issuer: str = "hub"
    token_audience: str = "hub"

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
            max_holds=config("MAX_HOLDS", cast=int, default=3),
            argon2_time_cost=config("ARGON2_TIME_COST", cast=int, default=3),
            argon2_memory_kib=config("ARGON2_MEMORY_KIB", cast=int, default=65536),
            workers=config("WORKERS", cast=int, default=1),
            metrics_dir=_metrics_dir(os.environ if environ is None else environ),
            log_level=config("LOG_LEVEL", default="info"),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


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
