"""A serving process's garbage collector: what it built frozen, and collections less often
(hub.collector); the tests put the collector back as they found it."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hub.__main__ as entry
from hub.config import load_settings


@pytest.fixture
def collector() -> Iterator[None]:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HUB_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite3'}")
    monkeypatch.delenv("HUB_GC_THRESHOLDS", raising=False)
    return tmp_path


@pytest.mark.parametrize("value", ["5000,15,50", "700,10,10"])  # the second: Python's own
def test_a_worker_freezes_what_it_built_and_collects_at_the_configured_thresholds(
    collector: None, environ: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("HUB_GC_THRESHOLDS", value)
    built = entry.app()  # what each worker of `serve --workers N` imports
    assert gc.get_threshold() == tuple(int(part) for part in value.split(","))
    assert gc.get_freeze_count() > 10_000  # the modules, the app and its routes at least
    assert not any(found is built for found in gc.get_objects())  # frozen: out of its sight


def test_one_process_serving_is_tuned_before_it_serves(
    collector: None, environ: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def run(app: object, **options: object) -> None:  # uvicorn's, not serving here
        seen.update(threshold=gc.get_threshold(), frozen=gc.get_freeze_count())

    monkeypatch.setattr(entry.uvicorn, "run", run)
    args = argparse.Namespace(host=None, port=None, workers=None)
    entry._serve(load_settings(), args)
    assert seen["threshold"] == (10_000, 20, 100)  # the default
    assert seen["frozen"] > 10_000
