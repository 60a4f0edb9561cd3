from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from sqlalchemy import create_engine

from hub import db
from tests import conftest
from tests.conftest import World, mail_off_the_global_random
from tests.server import serve_in_thread

EXAMPLES = 8  # per operation and generation mode: the whole run stays well under 2 minutes


@pytest.fixture(scope="module")
def served(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real server on the embedded backend, with a patient, a doctor and an admin."""
    tmp = tmp_path_factory.mktemp("fuzz")
    shutil.copy(sqlite_template, tmp / "hub.sqlite3")
    hub_settings = conftest.test_settings(f"sqlite+aiosqlite:///{tmp / 'hub.sqlite3'}", None, tmp)
    raw = create_engine(db.sync_url(hub_settings.database_url))
    with (
        pytest.MonkeyPatch.context() as patch,
        serve_in_thread(hub_settings) as (url, _),
        httpx.Client(base_url=url) as client,
    ):
        mail_off_the_global_random(patch)  # every account made, here or by the fuzz, is mailed
        world = World(client, hub_settings, raw)  # type: ignore[arg-type]
        yield url, {"patient": world.patient(), "doctor": world.doctor(), "admin": world.admin()}
    raw.dispose()


def _role(path: str) -> str:
    if path.startswith(("/specializations", "/admins")):
        return "admin"
    if path.startswith(("/doctors", "/appointments/doctor")):
        return "doctor"
    return "patient"


@pytest.mark.parametrize(
    "mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
)
def test_every_operation_conforms_to_the_schema(served: Any, mode: Any) -> None:
    # Every built-in check: valid requests accepted, invalid ones refused, statuses, headers and
    # bodies as documented, no server error.
    url, actors = served
    api = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    for result in api.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def conforms(case: Any) -> None:
            headers = dict(case.headers or {})
            token = actors[_role(case.path)].token
            headers.setdefault("Authorization", f"Bearer {token}")
            case.call_and_validate(headers=headers)

        try:
            conforms()
        except Unsatisfiable:  # negative mode: nothing of this operation can be made invalid
            continue
        except (AssertionError, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {exc}")
    assert failures == [], "\n\n".join(failures)
