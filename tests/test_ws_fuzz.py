"""A fuzz of the WebSocket parser and dispatcher (hypothesis): whatever a client sends, the
parser answers a command or InvalidInput, and a live session answers every frame with a reply
or a stable `error` code, never `internal`, and stays open."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub import protocol
from hub.errors import HubError
from hub.ws import connection
from tests.conftest import World, mail_off_the_global_random

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ["doctor_id", "start", "hold_id", "appointment_id", "from", "to", "since", "token",
          "idempotency_key", "reason", "ref"]  # fmt: skip
# Command-shaped: a known type (or not) with its fields, each any JSON value or a likely one.
LIKELY = st.sampled_from([1, 0, -1, 2**31, "2030-01-07T10:00:00Z", "2030-01-07", "x", ""])
COMMAND = st.fixed_dictionaries(
    {"type": st.sampled_from([*sorted(protocol.COMMANDS), "nope"]) | st.text(max_size=8)},
    optional={name: LIKELY | JSON for name in FIELDS},
)
FRAMES = st.one_of(COMMAND.map(json.dumps), JSON.map(json.dumps), st.text(max_size=60))


@given(FRAMES)
@settings(max_examples=400, deadline=None)
def test_the_parser_answers_a_command_or_invalid_input(frame: str) -> None:
    try:
        command = protocol.parse(frame)
    except HubError as exc:
        assert exc.status == 422
    else:
        assert command["type"] in protocol.COMMANDS


def test_a_session_answers_every_fuzzed_frame_without_an_internal_error(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "RATE", 1e6)  # the fuzz is not a flood
    monkeypatch.setattr(connection, "BURST", 1e6)
    mail_off_the_global_random(monkeypatch)  # the patient's sign-up mail, sent meanwhile
    patient = world.patient()
    with world.client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": patient.token})
        assert ws.receive_json()["type"] == "ready"
        seen: list[dict[str, Any]] = []

        @given(COMMAND.filter(lambda c: c.get("type") != "auth").map(json.dumps))
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        def one(frame: str) -> None:
            ws.send_text(frame)
            ws.send_json({"type": "ping", "ref": "fuzz-fence"})
            while True:  # everything up to the fence's pong answers the fuzzed frame
                message = ws.receive_json()
                seen.append(message)
                assert message.get("code") != "internal", (frame, message)
                if message.get("type") == "pong" and message.get("ref") == "fuzz-fence":
                    return

        one()
        ws.send_json({"type": "ping", "ref": "still-open"})
        while ws.receive_json().get("ref") != "still-open":
            pass
    assert any(m.get("type") == "error" for m in seen)  # the fuzz reached the refusals
