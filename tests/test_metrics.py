from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from hub import db
from hub.bus import Bus
from hub.config import Settings
from hub.metrics import Metrics
from hub.models import OutboxEvent
from hub.relay import Relay
from tests.conftest import World, iso, slot

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    """Every sample of GET /metrics, by name and labels."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_rest_requests_are_timed_by_route_template_and_refusals_counted_by_code(
    world: World,
) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    before = scrape(world.client)
    world.book(first, doctor, slot(10))
    taken = world.client.post(
        "/appointments/",
        json={"doctor_id": doctor.id, "scheduled_datetime": iso(slot(10))},
        headers=second.headers,
    )
    assert taken.status_code == 409
    world.client.get(f"/doctors/{doctor.id}")
    after = scrape(world.client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    count = "hub_http_request_duration_seconds_count"
    assert grew(count, method="POST", route="/appointments/", status="201") == 1
    assert grew(count, method="POST", route="/appointments/", status="409") == 1
    assert grew(count, method="GET", route="/doctors/{id}", status="200") == 1
    assert grew("hub_errors_total", edge="rest", code="slot_taken") == 1
    assert grew("hub_events_published_total") >= 2  # the slot booked, the appointment booked


def test_websocket_sessions_commands_and_closes_are_counted(world: World) -> None:
    patient = world.patient()
    client = world.client
    with client.websocket_connect("/ws") as session:
        session.send_text(json.dumps({"type": "auth", "token": patient.token}))
        assert json.loads(session.receive_text())["type"] == "ready"
        session.send_text(json.dumps({"type": "ping"}))
        assert json.loads(session.receive_text())["type"] == "pong"  # the session is serving
        assert value(scrape(client), "hub_ws_sessions") == 1
        session.send_text(json.dumps({"type": "watch"}))
        assert json.loads(session.receive_text())["code"] == "invalid"
    with client.websocket_connect("/ws") as refused:
        refused.send_text(json.dumps({"type": "auth", "token": "not a token"}))
        refused.receive()  # the close frame
    samples = scrape(client)
    assert value(samples, "hub_ws_sessions") == 0
    count = "hub_ws_command_duration_seconds_count"
    assert value(samples, count, command="ping", outcome="ok") == 1
    assert value(samples, count, command="unparsed", outcome="invalid") == 1
    assert value(samples, "hub_errors_total", edge="ws", code="invalid") == 1
    assert value(samples, "hub_ws_closes_total", code="4401") == 1


class _Bus:
    """A bus that takes every message and keeps none."""

    async def publish_many(self, messages: list[tuple[str, Any]]) -> None:
        return None


async def test_the_relay_reports_how_far_the_outbox_is_behind(settings: Settings) -> None:
    # hub_outbox_lag_seconds is what the outbox-lag alert reads (hub/deploy/alerts.yml).
    engine = db.create_engine(settings.database_url)
    try:
        sessions = db.session_factory(engine)
        metrics = Metrics()
        relay = Relay(sessions, cast(Bus, _Bus()), metrics)
        async with sessions.begin() as session:
            session.add(
                OutboxEvent(
                    channel="doctor:1",
                    payload={"type": "slot"},
                    created_at=datetime.now(UTC) - timedelta(minutes=2),
                    claimed_at=datetime.now(UTC) - timedelta(seconds=5),  # a dead claim
                )
            )
        assert await relay.flush() == 1  # measured, then published
        sample = metrics.registry.get_sample_value
        assert (sample("hub_outbox_lag_seconds") or 0) >= 110
        assert sample("hub_outbox_unpublished") == 1
        assert await relay.flush() == 0
        assert sample("hub_outbox_lag_seconds") == 0
        assert sample("hub_outbox_unpublished") == 0
    finally:
        await engine.dispose()
