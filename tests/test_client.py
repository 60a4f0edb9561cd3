from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hub import client
from hub.config import Settings
from tests.conftest import PASSWORD, World, iso, slot
from tests.server import run_server


def _frames(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_client_signs_in_and_prints_the_replies_to_what_it_sends(
    world: World,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    patient, doctor = world.patient(), world.doctor()
    monkeypatch.setenv("HUB_PASSWORD", PASSWORD)
    hold = {"type": "hold", "doctor_id": doctor.id, "start": iso(slot(10)), "ref": "h"}
    with run_server(settings) as url:
        code = client.main(
            ["--url", url, "--email", patient.email, "send", json.dumps(hold), "--wait", "1"]
        )
    frames = _frames(capsys.readouterr().out)
    assert code == 0
    assert frames[0]["type"] == "ready"
    assert any(f["type"] == "held" and f["ref"] == "h" for f in frames)


def test_client_reports_a_failed_sign_in_plainly(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HUB_PASSWORD", "wrong password")
    with run_server(settings) as url:
        code = client.main(["--url", url, "--email", "nobody@example.org", "send", "{}"])
    assert code == 2
    assert "cannot sign in" in capsys.readouterr().err


def test_client_refused_at_sign_in_says_which_role_to_try(
    world: World,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    doctor = world.doctor()
    monkeypatch.setenv("HUB_PASSWORD", PASSWORD)
    with run_server(settings) as url:
        code = client.main(["--url", url, "--email", doctor.email, "send", "{}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "wrong email or password for a patient" in err
    assert "try --role doctor" in err


def test_client_without_a_password_or_a_terminal_says_how_to_give_one() -> None:
    environ = {k: v for k, v in os.environ.items() if k != "HUB_PASSWORD"}
    done = subprocess.run(
        [sys.executable, "-m", "hub.client", "--email", "a@example.org", "watch", "1"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=environ,
        start_new_session=True,  # no controlling terminal for getpass to open
        timeout=60,
    )
    assert done.returncode == 2
    assert "set HUB_PASSWORD" in done.stderr
    assert "Traceback" not in done.stderr


def test_client_books_and_its_retry_finds_the_booking_whose_answer_was_lost(
    world: World,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    patient, doctor = world.patient(), world.doctor()
    monkeypatch.setenv("HUB_PASSWORD", PASSWORD)
    start = iso(slot(10))
    # The booking committed, and its answer never reached the client...
    lost = world.client.post(
        "/appointments/",
        json={"doctor_id": doctor.id, "scheduled_datetime": start},
        headers={**patient.headers, "Idempotency-Key": "kept-key-1"},
    )
    assert lost.status_code == 201
    argv = ["--url", "", "--email", patient.email, "book", str(doctor.id), start]
    with run_server(settings) as url:
        argv[1] = url
        code = client.main([*argv, "--key", "kept-key-1"])  # ...so it sends it again
        again = _frames(capsys.readouterr().out)[-1]
        other = client.main([*argv, "--key", "another-key"])
        taken = _frames(capsys.readouterr().out)[-1]
    assert code == 0 and again["type"] == "booked"
    assert again["appointment"]["id"] == lost.json()["id"]  # found, not refused as taken
    assert other == 1 and taken["code"] in ("slot_taken", "patient_busy", "already_booked")
