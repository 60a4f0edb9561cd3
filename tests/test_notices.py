"""Notifications: what is sent when, to a real SMTP server started here (aiosmtpd), parsed as
a mail client and a calendar app would; on both backends, and over three hub processes."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiosmtplib.email
import pytest
from aiosmtpd.controller import Controller
from icalendar import Calendar
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from hub import db, invites, letters, notices
from hub import sender as sender_module
from hub.app import create_app
from hub.config import Settings
from hub.mail import Files, Message, Outcome, SmtpMail, Transport
from hub.models import Notice
from hub.sender import Sender
from tests.conftest import Actor, World, iso, slot, statements_about
from tests.server import free_port, hub_processes

WAIT = 10.0


class Inbox:
    """What an SMTP server received, as parsed messages."""

    def __init__(self, ignore: frozenset[str] = frozenset({"verify"})) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse = 0  # answer the next this many with a temporary failure
        self.ignore = ignore  # kinds kept out of `messages` (every registration verifies)
        self.connections: list[Any] = []  # the SMTP session of each connection kept's messages
        self.recipients: list[list[str]] = []  # each kept message's envelope recipients
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        if str(parsed["X-Hub-Notification"]).split("-", 1)[1] in self.ignore:
            return "250 OK"
        with self._lock:
            if not any(known is session for known in self.connections):
                self.connections.append(session)
            if self.refuse > 0:
                self.refuse -= 1
                return "451 try again later"
            self.messages.append(parsed)
            self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def until(self, count: int, wait: float = WAIT) -> list[EmailMessage]:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.messages)} messages, not {count}, within {wait} s")

    def kinds(self) -> list[str]:
        return [str(m["X-Hub-Notification"]).split("-", 1)[1] for m in self.messages]


@contextlib.contextmanager
def smtp_server(**options: Any) -> Iterator[tuple[str, Inbox]]:
    """An SMTP server (aiosmtpd) on a free port, and what it received."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", inbox
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[str, Inbox]]:
    with smtp_server() as served:
        yield served


@pytest.fixture
def mailed(settings: Settings, raw: Engine, smtp: tuple[str, Inbox]) -> Iterator[World]:
    """A hub that mails to the test's SMTP server."""
    url, _ = smtp
    with TestClient(create_app(replace(settings, smtp_url=url))) as client:
        yield World(client, replace(settings, smtp_url=url), raw)


def invite_of(message: EmailMessage) -> Calendar:
    (part,) = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return Calendar.from_ical(payload)


def event_of(calendar: Calendar) -> Any:
    (event,) = calendar.walk("VEVENT")
    return event


def body_of(message: EmailMessage) -> str:
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    assert plain is not None and rich is not None
    return f"{plain.get_content()}\n{rich.get_content()}"


def settled(raw: Engine, kind: str, wait: float = 15) -> list[Any]:
    """The notifications of a kind once none is pending any more (or after `wait` seconds):
    account, state, attempts and detail, by account."""
    deadline = time.monotonic() + wait
    while True:
        with raw.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT account_id, state, attempts, detail FROM notifications"
                    " WHERE kind = :kind ORDER BY account_id"
                ),
                {"kind": kind},
            ).all()
        if all(r.state != "pending" for r in rows) or time.monotonic() > deadline:
            return list(rows)
        time.sleep(0.05)


def berlin_letter() -> letters.Facts:
    """A confirmation whose names, clinic and sender are outside ASCII."""
    start = datetime(2027, 3, 28, 7, 0, tzinfo=UTC)
    entry = invites.Entry(
        uid="appointment-7@hub",
        sequence=0,
        start=start,
        end=start + timedelta(minutes=30),
        summary="Termin bei Dr. Jürgen Weiß",
        location="Hauptstraße 5",
        stamp=start,
    )
    return letters.Facts(
        kind=Notice.booked,
        notification_id=7,
        clinic="Praxis Müller",
        to="Zoë Brontë <zoe@example.org>",
        sender="Praxis Müller <praxis@example.org>",
        name="Zoë",
        zone=ZoneInfo("Europe/Berlin"),
        app_url="http://hub.example/",
        doctor="Dr. Jürgen Weiß, Kardiologie",
        address="Hauptstraße 5",
        start=start,
        end=start + timedelta(minutes=30),
        manage_url="http://hub.example/#/manage?token=a=b",
        entry=entry,
    )


def test_a_letter_in_any_script_reads_back_as_written() -> None:
    """Names, clinic and sender outside ASCII survive the trip through a mail client's parser:
    headers encoded, both bodies and the invite decoded to what was composed."""
    facts = berlin_letter()
    raw = letters.compose(facts).as_bytes()
    assert raw.isascii()  # 7-bit clean on the wire
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert str(parsed["Subject"]).endswith(" · Praxis Müller")
    assert parsed["From"].addresses[0].display_name == "Praxis Müller"
    assert parsed["To"].addresses[0].display_name == "Zoë Brontë"
    assert parsed["X-Hub-Notification"] == "7-booked"
    body = body_of(parsed)
    assert "Hello Zoë," in body and "Dr. Jürgen Weiß" in body and "Hauptstraße 5" in body
    assert "http://hub.example/#/manage?token=a=b" in body
    event = event_of(invite_of(parsed))
    assert str(event["summary"]) == "Termin bei Dr. Jürgen Weiß"
    assert event.decoded("dtstart") == facts.start


def test_a_letter_whose_text_looks_like_boundaries_reads_back_whole() -> None:
    """The hub names each multipart's boundary itself (`==` and hex): text full of `=` runs
    and `--` lines cannot end a part early, flattened as the files write it and as aiosmtplib
    sends it."""
    start = datetime(2027, 3, 29, 7, 0, tzinfo=UTC)
    tricky = "==" + "0123456789abcdef" * 2 + "== --==x== ====="
    entry = invites.Entry(
        uid="appointment-9@hub", sequence=0, start=start, end=start, summary=tricky, stamp=start
    )
    facts = letters.Facts(
        kind=Notice.booked,
        notification_id=9,
        clinic="Clinic ====",
        to="pat@example.org",
        sender="hub@example.org",
        name=tricky,
        zone=ZoneInfo("UTC"),
        app_url="http://hub.example/",
        doctor=f"Dr {tricky}",
        address=f"--{tricky}\n--{tricky}--",
        start=start,
        end=start + timedelta(minutes=30),
        entry=entry,
    )
    message = letters.compose(facts)
    boundaries = [part.get_boundary() for part in message.walk() if part.is_multipart()]
    assert len(boundaries) == 2 and len(set(boundaries)) == 2
    assert all(b is not None and b.startswith("==") for b in boundaries)
    for raw in (message.as_bytes(), aiosmtplib.email.flatten_message(message)):
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        assert [p.get_content_type() for p in parsed.walk()] == [
            "multipart/mixed",
            "multipart/alternative",
            "text/plain",
            "text/html",
            "text/calendar",
        ]
        body = body_of(parsed)
        assert f"Hello {tricky}," in body and f"--{tricky}--" in body
        assert str(event_of(invite_of(parsed))["summary"]) == tricky


@pytest.mark.parametrize("kind", list(Notice))
@pytest.mark.parametrize(
    ("clinic", "name", "to"),
    [
        ("Hub Clinic", "Pat", "Pat Smith <pat@example.org>"),
        ("Praxis Müller", "Zoë", "Zoë Brontë <zoe@example.org>"),
        ("A clinic whose name is long enough to fold a line " * 2, "P", "p@example.org"),
        ("Clinic\tof  spaces ", " Pat ", "  <odd@example.org>"),
        ("Clinic\x0cof a form feed", "Pat", "p@example.org"),  # compat32 breaks lines at \f
    ],
)
def test_a_letter_is_written_byte_for_byte_as_compat32_writes_it(
    kind: Notice, clinic: str, name: str, to: str
) -> None:
    """The letters' policy writes a short ASCII header as it is, where compat32 folds every
    header: the same bytes either way, to a file and to SMTP (CRLF)."""
    berlin = berlin_letter()
    assert berlin.entry is not None and berlin.start is not None
    facts = replace(
        berlin,
        kind=kind,
        clinic=clinic,
        to=to,
        sender=f"{clinic} <clinic@example.org>",
        name=name,
        entry=replace(berlin.entry, summary=clinic),
        link="http://hub.example/#/verify?token=abc",
        expires_at=berlin.start,
        reason="The doctor is away",
    )
    message = letters.compose(facts)
    assert message.policy is letters.POLICY
    for linesep in ("\n", "\r\n"):
        mine = message.as_bytes(policy=letters.POLICY.clone(linesep=linesep))
        theirs = message.as_bytes(policy=email.policy.compat32.clone(linesep=linesep))
        assert mine == theirs


def test_book_reschedule_cancel_mail_one_event_that_moves_then_is_cancelled(
    mailed: World, smtp: tuple[str, Inbox]
) -> None:
    world, (_, inbox) = mailed, smtp
    doctor, patient = world.doctor(), world.patient()
    body = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(10)), "reason": "chest pain"}
    booked = world.client.post("/appointments/", json=body, headers=patient.headers).json()
    inbox.until(1)
    moved = world.client.put(
        f"/appointments/{booked['id']}/reschedule",
        json={"scheduled_datetime": iso(slot(11))},
        headers=patient.headers,
    ).json()
    inbox.until(2)
    cancelled = world.client.put(
        f"/appointments/{moved['id']}/cancel",
        json={"reason": "the clinic is closed"},
        headers=doctor.headers,
    )
    assert cancelled.status_code == 200, cancelled.text
    messages = inbox.until(3)
    time.sleep(1.5)  # a sender round more: nothing else comes (the reminders are days away)
    assert inbox.kinds() == ["booked", "rescheduled", "cancelled"]
    assert {m["To"] for m in messages} == {patient.email}
    calendars = [invite_of(m) for m in messages]
    events = [event_of(c) for c in calendars]
    assert [str(c["METHOD"]) for c in calendars] == ["REQUEST", "REQUEST", "CANCEL"]
    assert len({str(e["UID"]) for e in events}) == 1
    assert [int(e["SEQUENCE"]) for e in events] == [0, 1, 2]
    assert str(events[-1]["STATUS"]) == "CANCELLED"
    assert events[0].decoded("DTSTART") == slot(10)
    assert events[1].decoded("DTSTART") == slot(11)
    texts = [body_of(m) for m in messages]
    assert all("chest pain" not in t for t in texts)  # no clinical text in email
    assert "the clinic is closed" in texts[2] and "your doctor" in texts[2]
    assert "(UTC)" in texts[0] and "cancel free of charge until" in texts[0]
    assert "#/manage?token=" in texts[0]


def test_a_reminder_of_an_appointment_cancelled_before_it_fell_due_is_never_sent(
    mailed: World, smtp: tuple[str, Inbox], raw: Engine
) -> None:
    world, (_, inbox) = mailed, smtp
    doctor, kept, gone = world.doctor(), world.patient(), world.patient()
    world.book(kept, doctor, slot(10))
    cancelled = world.book(gone, doctor, slot(11))
    inbox.until(2)  # the two confirmations
    world.client.put(f"/appointments/{cancelled['id']}/cancel", json={}, headers=gone.headers)
    inbox.until(3)
    with raw.begin() as conn:  # time passes: both reminders fall due
        conn.execute(
            text("UPDATE notifications SET due_at = :now WHERE kind = 'reminder'"),
            {"now": datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)},
        )
    # Each kept appointment's two reminders, at the sender's next idle look: it learns of rows
    # moved by hand no sooner (time passing it would have woken for).
    messages = inbox.until(5, wait=sender_module.IDLE + WAIT)
    states = settled(raw, "reminder")
    time.sleep(1.5)  # and nothing more
    assert inbox.kinds() == ["booked", "booked", "cancelled", "reminder", "reminder"]
    assert {m["To"] for m in messages[3:]} == {kept.email}
    assert {(r.account_id, r.state) for r in states} == {(kept.id, "sent"), (gone.id, "dropped")}
    assert {r.detail for r in states if r.state == "dropped"} == {"cancelled or moved since"}


def test_a_refused_message_is_tried_again_later(
    mailed: World, smtp: tuple[str, Inbox], raw: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, (_, inbox) = mailed, smtp
    monkeypatch.setattr(notices, "BACKOFF", (1, 1, 1, 1, 1))
    inbox.refuse = 2
    world.book(world.patient(), world.doctor(), slot(10))
    inbox.until(1, wait=15)
    (row,) = settled(raw, "booked")  # the server has it; the sender records it just after
    assert (row.state, row.attempts) == ("sent", 2)  # refused twice, sent the third time


def test_the_embedded_default_writes_each_message_as_an_eml_file(
    settings: Settings, raw: Engine, backend: str, tmp_path: Path
) -> None:
    if backend != "embedded":
        pytest.skip("the file sink is the embedded default's")
    local = replace(settings, data_dir=tmp_path, smtp_url=None)
    with TestClient(create_app(local)) as client:
        world = World(client, local, raw)
        patient = world.patient()
        world.book(patient, world.doctor(), slot(10))
        deadline = time.monotonic() + WAIT
        while not list((tmp_path / "mail").glob("*-booked.eml")) and time.monotonic() < deadline:
            time.sleep(0.05)
    (written,) = (tmp_path / "mail").glob("*-booked.eml")
    parsed = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert parsed["To"] == patient.email


def reminded(world: World, raw: Engine, people: int) -> tuple[list[Actor], datetime]:
    """`people` patients booked an hour apart from 09:00 (two reminders each; the hub's own
    sender wrote their confirmations), and a time at which every reminder is due."""
    doctor = world.doctor()
    patients = [world.patient() for _ in range(people)]
    for hour, patient in enumerate(patients, start=9):
        world.book(patient, doctor, slot(hour))
    assert len(settled(raw, "booked")) == people
    return patients, slot(8 + people) - timedelta(minutes=1)


@contextlib.asynccontextmanager
async def own_sender(
    world: World, transport: Transport, at: datetime
) -> AsyncIterator[tuple[Sender, AsyncEngine]]:
    """A sender of the test's own, on an engine of its own, whose clock says `at`."""
    engine = db.create_engine(world.settings.database_url)
    try:
        yield (
            Sender(db.session_factory(engine), world.settings, transport, clock=lambda: at),
            engine,
        )
    finally:
        await engine.dispose()


async def test_a_round_of_reminders_is_read_and_recorded_in_a_few_statements(
    world: World, raw: Engine, tmp_path: Path
) -> None:
    """The sender reads a round's accounts and appointments with a query per kind for them
    all, and records what became of them in one transaction: a statement count that does not
    grow with the round (one message at a time, it was about eight statements each)."""
    _, later = reminded(world, raw, 8)
    async with own_sender(world, Files(tmp_path / "later"), later) as (sender, engine):
        with statements_about(engine) as statements:
            handled = await sender.send_due()
    rows = settled(raw, "reminder")
    assert handled == len(rows) == 16
    assert {r.state for r in rows} == {"sent"}
    assert len(list((tmp_path / "later").glob("*-reminder.eml"))) == 16
    # Fewer statements than messages (one at a time: 99 for these 16 on MariaDB, 133 on SQLite).
    assert len(statements) < handled, "\n".join(s.split("\n")[0][:90] for s in statements)


async def test_a_round_of_letters_goes_over_one_smtp_connection_and_a_refusal_waits_alone(
    world: World, raw: Engine
) -> None:
    """A round's sixteen reminders reach the server over one connection (one each was a TCP
    connection, a greeting, EHLO and QUIT per letter); the one the server refuses, and the
    two to an address outside ASCII that this server (no SMTPUTF8) cannot take, are tried
    again later while the other thirteen count as sent."""
    people, later = reminded(world, raw, 8)
    with raw.begin() as conn:
        conn.execute(
            text("UPDATE patients SET email = 'jörg@example.org' WHERE id = :id"),
            {"id": people[3].id},
        )
    with smtp_server(enable_SMTPUTF8=False) as (url, inbox):
        inbox.refuse = 1
        async with own_sender(world, SmtpMail(url), later) as (sender, _):
            assert await sender.send_due() == 16
    assert len(inbox.messages) == 13 and inbox.kinds() == ["reminder"] * 13
    assert len(inbox.connections) == 1
    rows = settled(raw, "reminder", wait=0)
    assert sorted((r.state, r.attempts) for r in rows) == [("pending", 1)] * 3 + [("sent", 0)] * 13
    later_on = sorted(r.detail for r in rows if r.state == "pending")
    assert later_on == ["SMTPDataError 451", "SMTPNotSupported", "SMTPNotSupported"]
    assert {r.account_id for r in rows if r.detail == "SMTPNotSupported"} == {people[3].id}


async def test_a_letter_to_an_address_outside_ascii_goes_to_a_server_that_takes_smtputf8() -> None:
    """Asked for with SMTPUTF8 once the server said it takes it: on a connection with neither
    a login nor STARTTLS nothing had said EHLO yet, and every such letter was refused."""
    facts = replace(berlin_letter(), to="Jörg Weiß <jörg@example.org>")
    done: list[Outcome] = []
    with smtp_server(enable_SMTPUTF8=True) as (url, inbox):
        await SmtpMail(url).send([letters.compose(facts)], done)
    assert done == [None]
    assert inbox.recipients == [["jörg@example.org"]]
    assert inbox.messages[0]["X-Hub-Notification"] == "7-booked"


async def test_a_letter_that_cannot_be_written_waits_alone(
    world: World, raw: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A letter whose writing fails is tried again later, and the round's others go (the
    round had stopped there, every row of it left claimed)."""
    _, later = reminded(world, raw, 4)
    compose = letters.compose
    broken: list[int] = []

    def failing_once(facts: letters.Facts) -> Any:
        if not broken:
            broken.append(facts.notification_id)
            raise ValueError("a template fault")
        return compose(facts)

    monkeypatch.setattr(letters, "compose", failing_once)
    async with own_sender(world, Files(tmp_path / "later"), later) as (sender, _):
        assert await sender.send_due() == 8
    assert len(list((tmp_path / "later").glob("*-reminder.eml"))) == 7
    rows = settled(raw, "reminder", wait=0)
    assert (
        sorted((r.state, r.attempts, r.detail) for r in rows)
        == [("pending", 1, "ValueError")] + [("sent", 0, None)] * 7
    )


def test_an_idle_sender_asks_nothing_and_a_commit_that_writes_a_notification_wakes_it(
    settings: Settings, raw: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing due, the sender reads no notification between its looks (it read one
    every second), and a transaction that writes one wakes it: with its idle looks an hour
    apart, only the wake can send the booking's confirmation."""
    monkeypatch.setattr(sender_module, "IDLE", 3600.0, raising=False)
    with TestClient(create_app(settings)) as client:
        world = World(client, settings, raw)
        doctor, patient = world.doctor(), world.patient()  # each verifies an address
        assert {r.state for r in settled(raw, "verify")} == {"sent"}
        engine = client.app_state["hub"].engine  # type: ignore[attr-defined]
        with statements_about(engine, "notifications") as seen:
            time.sleep(1.5)  # the round after the verifications, and its pause
            seen.clear()
            time.sleep(3)
            assert seen == []
            world.book(patient, doctor, slot(10))
            assert [r.state for r in settled(raw, "booked")] == ["sent"]


class Halting:
    """A transport that hands over three messages of a round, then waits until cancelled:
    a process stopping in the middle of a round."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()

    async def send(self, messages: Sequence[Message], done: list[Outcome]) -> None:
        done += [None] * 3
        self.reached.set()
        await asyncio.Event().wait()


async def test_a_round_cut_short_records_what_it_sent_and_leaves_the_rest_claimed(
    world: World, raw: Engine
) -> None:
    """What went out before the cut is recorded as sent (lost, it was sent again by whoever
    claimed the rows a minute later); what did not stays claimed for that."""
    _, later = reminded(world, raw, 4)
    transport = Halting()
    async with own_sender(world, transport, later) as (sender, _):
        round_ = asyncio.create_task(sender.send_due())
        await asyncio.wait_for(transport.reached.wait(), WAIT)
        round_.cancel()
        with pytest.raises(asyncio.CancelledError):
            await round_
    with raw.connect() as conn:
        rows = conn.execute(
            text("SELECT state, claimed_by FROM notifications WHERE kind = 'reminder'")
        ).all()
    assert len(rows) == 8
    assert sorted(r.state for r in rows) == ["pending"] * 5 + ["sent"] * 3
    assert all(r.claimed_by is not None for r in rows if r.state == "pending")


@pytest.mark.parametrize(
    ("start", "lead", "due"),
    [
        ("2026-12-10T15:00", 1440, "2026-12-09T15:00"),  # a day before: outside quiet hours
        ("2026-12-10T09:00", 120, "2026-12-09T20:55"),  # 07:00 is quiet: the evening before
        ("2026-12-10T23:00", 120, "2026-12-10T20:55"),  # 21:00 is quiet: just before it
        ("2026-12-10T10:30", 120, "2026-12-10T08:30"),  # 08:30: no longer quiet
    ],
)
def test_a_reminder_in_the_quiet_hours_moves_earlier(start: str, lead: int, due: str) -> None:
    zone = ZoneInfo("Europe/Paris")
    at = datetime.fromisoformat(start).replace(tzinfo=zone)
    now = at - timedelta(days=7)
    (got,) = notices.reminder_times(notices.Policy((lead,)), at, now, zone)
    assert got.astimezone(zone).replace(tzinfo=None) == datetime.fromisoformat(due)


def test_no_reminder_is_due_before_now() -> None:
    zone = ZoneInfo("UTC")
    start = datetime(2026, 12, 10, 12, tzinfo=zone)
    got = notices.reminder_times(
        notices.Policy((1440, 120)), start, start - timedelta(hours=3), zone
    )
    assert got == [start - timedelta(hours=2)]


def test_three_processes_send_100_due_notifications_once_each(
    settings: Settings, raw: Engine, backend: str, tmp_path: Path, smtp: tuple[str, Inbox]
) -> None:
    if backend == "embedded":
        pytest.skip("the embedded default is one process by design")
    url, inbox = smtp
    inbox.ignore = frozenset()
    now = datetime.now(UTC).replace(tzinfo=None)
    with raw.begin() as conn:
        ids = [
            conn.execute(
                text(
                    "INSERT INTO patients (first_name, last_name, date_of_birth, gender, email,"
                    " phone, password_hash, created_at, updated_at) VALUES ('Many', 'Patients',"
                    " '1990-01-01', 'other', :email, '+4420794600', 'x', :now, :now)"
                ),
                {"email": f"many{n}@example.org", "now": now},
            ).lastrowid
            for n in range(100)
        ]
    with hub_processes(replace(settings, smtp_url=url), tmp_path, 3):
        with raw.begin() as conn:  # due at once, while three senders run
            conn.execute(
                text(
                    "INSERT INTO notifications (kind, channel, role, account_id, payload, due_at,"
                    " state, attempts, created_at) VALUES ('verify', 'email', 'patient', :id,"
                    " '{\"token\": \"t\"}', :now, 'pending', 0, :now)"
                ),
                [{"id": pid, "now": now} for pid in ids],
            )
        inbox.until(100, wait=30)
        time.sleep(3)  # every sender had its rounds: nothing more comes
    tags = [str(m["X-Hub-Notification"]) for m in inbox.messages]
    assert len(tags) == 100 and len(set(tags)) == 100
    assert {str(m["To"]) for m in inbox.messages} == {f"many{n}@example.org" for n in range(100)}


def test_a_kind_turned_off_is_not_sent_and_a_cancellation_always_is(
    mailed: World, smtp: tuple[str, Inbox], raw: Engine
) -> None:
    world, (_, inbox) = mailed, smtp
    doctor, patient = world.doctor(), world.patient()
    path = f"/patients/{patient.id}/notifications"
    assert world.client.get(path, headers=patient.headers).json() == {
        "booked": True,
        "rescheduled": True,
        "reminder": True,
        "offer": True,
    }
    off = world.client.put(path, json={"booked": False}, headers=patient.headers)
    assert off.status_code == 200 and off.json()["booked"] is False, off.text
    assert (
        world.client.put(path, json={"cancelled": False}, headers=patient.headers).status_code
        == 422
    )
    assert world.client.put(path, json={"booked": "no"}, headers=patient.headers).status_code == 422
    booked = world.book(patient, doctor, slot(10))
    world.client.put(f"/appointments/{booked['id']}/cancel", json={}, headers=patient.headers)
    inbox.until(1)
    time.sleep(1.5)
    assert inbox.kinds() == ["cancelled"]
    with raw.connect() as conn:
        detail = conn.execute(
            text("SELECT state, detail FROM notifications WHERE kind = 'booked'")
        ).one()
    assert tuple(detail) == ("dropped", "booked turned off")


def test_a_message_gives_the_time_in_the_patients_own_zone_and_names_it(
    mailed: World, smtp: tuple[str, Inbox]
) -> None:
    world, (_, inbox) = mailed, smtp
    doctor = world.doctor()
    patient = world.patient(timezone="America/New_York")
    mine = world.client.get("/patients/me", headers=patient.headers).json()
    assert mine["timezone"] == "America/New_York"
    world.book(patient, doctor, slot(15))  # 15:00 UTC
    (message,) = inbox.until(1)
    local = slot(15).astimezone(ZoneInfo("America/New_York"))
    assert f"{local:%H:%M}" in body_of(message)
    assert "(America/New_York)" in body_of(message)
    refused = world.client.post("/patients/", json=world.person(timezone="Mars/Olympus"))
    assert refused.status_code == 422
