from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from hub.config import Settings
from hub.db import head_revision, sync_url
from tests.conftest import MARIADB_URL


def _hub(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "HUB_DATABASE_URL": settings.database_url,
        "HUB_SECRET_KEY": settings.secret_key,
        "HUB_DATA_DIR": str(settings.data_dir),
        "HUB_ARGON2_TIME_COST": "1",
        "HUB_ARGON2_MEMORY_KIB": "1024",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_reports_the_head_revision(settings: Settings) -> None:
    done = _hub(settings, "migrate")
    assert done.returncode == 0, done.stderr
    assert f"schema at revision {head_revision(settings.database_url)}" in done.stdout


def test_create_admin_makes_an_admin_who_can_sign_in(settings: Settings, raw: Engine) -> None:
    done = _hub(
        settings,
        "create-admin",
        "--email",
        "Boss@Clinic.example",
        HUB_ADMIN_PASSWORD="s3cret-enough",
    )
    assert done.returncode == 0, done.stderr
    with raw.connect() as conn:
        stored = conn.execute(text("SELECT email, password_hash FROM admins")).one()
    assert stored.email == "boss@clinic.example"
    assert stored.password_hash.startswith("$argon2id$")


def test_create_admin_twice_is_refused_plainly(settings: Settings) -> None:
    first = _hub(
        settings, "create-admin", "--email", "a@b.example", HUB_ADMIN_PASSWORD="s3cret-enough"
    )
    again = _hub(
        settings, "create-admin", "--email", "a@b.example", HUB_ADMIN_PASSWORD="s3cret-enough"
    )
    assert first.returncode == 0
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr


def test_create_admin_refuses_a_short_password(settings: Settings) -> None:
    done = _hub(settings, "create-admin", "--email", "a@b.example", HUB_ADMIN_PASSWORD="short")
    assert done.returncode == 2
    assert "8 characters" in done.stderr


def test_hub_refuses_mysql_without_a_secret(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    environ["HUB_DATABASE_URL"] = "mysql+aiomysql://nobody@127.0.0.1:1/none"
    done = subprocess.run(
        [sys.executable, "-m", "hub", "serve"],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "HUB_SECRET_KEY must be set" in done.stderr


@pytest.mark.skipif(MARIADB_URL is None, reason="needs HUB_TEST_DATABASE_URL (MariaDB)")
def test_serve_refuses_an_unmigrated_mysql_schema(tmp_path: Path) -> None:
    assert MARIADB_URL is not None
    server = MARIADB_URL.rsplit("/", 1)[0]
    engine = create_engine(sync_url(server + "/mysql"))
    with engine.begin() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS hub_never_migrated"))
        conn.execute(text("CREATE DATABASE hub_never_migrated"))
    engine.dispose()
    url = server + "/hub_never_migrated"
    settings = Settings(database_url=url, secret_key="k" * 40, data_dir=tmp_path)
    done = _hub(settings, "serve", "--port", "1")
    assert done.returncode == 2
    assert "run `python -m hub migrate`" in done.stderr
