from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from hub.config import SECRET_FILE, Settings, load_settings
from hub.errors import ConfigError

MYSQL = "mysql+aiomysql://hub:hub@db.example:3306/hub"
LONG_SECRET = "s" * 32


def _load(tmp_path: Path, **environ: str) -> Settings:
    return load_settings({"HUB_DATA_DIR": str(tmp_path), **environ})


def test_defaults_are_embedded_sqlite_under_the_data_dir_without_redis(tmp_path: Path) -> None:
    settings = _load(tmp_path)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite3'}"
    assert settings.embedded and settings.redis_url is None
    assert (settings.data_dir, settings.port, settings.allowed_origins) == (tmp_path, 8000, ())


def test_data_dir_defaults_to_hub_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.data_dir == Path("hub-data")
    assert (tmp_path / "hub-data" / SECRET_FILE).is_file()


def test_empty_redis_url_means_no_redis(tmp_path: Path) -> None:
    assert _load(tmp_path, HUB_REDIS_URL="").redis_url is None


@pytest.mark.parametrize(("value", "cluster"), [("true", True), ("1", True), ("false", False)])
def test_redis_cluster_is_a_boolean(tmp_path: Path, value: str, cluster: bool) -> None:
    assert _load(tmp_path, HUB_REDIS_CLUSTER=value).redis_cluster is cluster
    assert _load(tmp_path).redis_cluster is False


def test_a_redis_cluster_value_that_is_not_a_boolean_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        _load(tmp_path, HUB_REDIS_CLUSTER="yes please")


def test_embedded_secret_is_kept_in_secret_key_with_mode_600(tmp_path: Path) -> None:
    settings = _load(tmp_path)
    path = tmp_path / SECRET_FILE
    assert path.read_text().strip() == settings.secret_key
    assert len(settings.secret_key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_embedded_secret_is_the_same_on_the_second_load(tmp_path: Path) -> None:
    assert _load(tmp_path).secret_key == _load(tmp_path).secret_key


def test_embedded_secret_is_not_shared_between_data_dirs(tmp_path: Path) -> None:
    assert _load(tmp_path / "a").secret_key != _load(tmp_path / "b").secret_key


def test_given_secret_is_used_and_no_secret_file_is_written(tmp_path: Path) -> None:
    assert _load(tmp_path, HUB_SECRET_KEY=LONG_SECRET).secret_key == LONG_SECRET
    assert not (tmp_path / SECRET_FILE).exists()


def test_mysql_without_a_secret_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HUB_SECRET_KEY"):
        _load(tmp_path, HUB_DATABASE_URL=MYSQL)
    assert not (tmp_path / SECRET_FILE).exists()


def test_mysql_with_a_secret_is_not_embedded(tmp_path: Path) -> None:
    settings = _load(tmp_path, HUB_DATABASE_URL=MYSQL, HUB_SECRET_KEY=LONG_SECRET)
    assert settings.database_url == MYSQL and not settings.embedded


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:///x.sqlite3", MYSQL])
def test_short_secret_is_a_config_error(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="32"):
        _load(tmp_path, HUB_DATABASE_URL=url, HUB_SECRET_KEY="s" * 31)


def test_allowed_origins_are_comma_separated(tmp_path: Path) -> None:
    origins = "https://a.example, https://b.example:8443"
    settings = _load(tmp_path, HUB_ALLOWED_ORIGINS=origins)
    assert settings.allowed_origins == ("https://a.example", "https://b.example:8443")


@pytest.mark.parametrize(
    "name", ["HUB_PORT", "HUB_TOKEN_TTL", "HUB_ARGON2_TIME_COST", "HUB_REDIS_TIMEOUT"]
)
def test_non_numeric_number_is_a_config_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=name.removeprefix("HUB_")):
        _load(tmp_path, **{name: "eighty"})


def test_numbers_are_parsed(tmp_path: Path) -> None:
    settings = _load(tmp_path, HUB_PORT="9000", HUB_TOKEN_TTL="60", HUB_REDIS_TIMEOUT="1.5")
    assert (settings.port, settings.token_ttl, settings.redis_timeout) == (9000, 60, 1.5)


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = _load(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_secret_is_not_in_the_repr(tmp_path: Path) -> None:
    settings = _load(tmp_path)
    assert settings.secret_key not in repr(settings)


def test_gc_thresholds_default_and_parsed(tmp_path: Path) -> None:
    assert _load(tmp_path).gc_thresholds == (10_000, 20, 100)
    assert _load(tmp_path, HUB_GC_THRESHOLDS=" 700, 10 ,10").gc_thresholds == (700, 10, 10)


@pytest.mark.parametrize("value", ["", "700,10", "700,10,10,10", "0,10,10", "a,b,c", "-1,10,10"])
def test_gc_thresholds_that_are_not_three_positive_numbers_are_a_config_error(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(ConfigError, match="GC_THRESHOLDS"):
        _load(tmp_path, HUB_GC_THRESHOLDS=value)
