"""The browser apps in static/, driven end to end by Chromium through Playwright against a real
hub: patients and a doctor watching one calendar live, a hub restart the pages ride out, a
booking made with the keyboard alone, the server's own messages shown where they belong, and a
screenshot of every page at desktop and phone width (artifacts/screenshots/)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright import sync_api
from sqlalchemy import Engine, text

from hub.auth import Passwords
from hub.config import Settings
from tests.conftest import PASSWORD, iso, next_workday, slot
from tests.server import free_port, run_server

expect = sync_api.expect

LIVE_MS = 1000  # how soon a change must show on every other page
SETTLE_MS = 10_000  # page loads, sign-ins, REST round trips
RECONNECT_MS = 30_000  # a restarted hub and the backoff before the pages are back
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
SPECIALIZATION = "Cardiology"  # id 1, seeded by the first migration


def slot_key(moment: datetime) -> str:
    """How the page names a slot: its start as JavaScript's toISOString() writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def local_time(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%H:%M")


def weeks_ahead(moment: datetime, zone: str) -> int:
    """How many times "Next week" takes a page in `zone` from this week to `moment`'s."""
    tz = ZoneInfo(zone)
    today = datetime.now(tz).date()
    day = moment.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday())
    return ((day - timedelta(days=day.weekday())) - monday).days // 7


# ---- accounts, through the REST API -------------------------------------------------------


@dataclass
class Account:
    role: str
    id: int
    email: str
    name: str
    token: str = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Clinic:
    """Accounts and bookings made through a running hub's REST API."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)
        self.serial = 0

    def __enter__(self) -> Clinic:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def _person(self, first: str, last: str, **extra: Any) -> dict[str, Any]:
        self.serial += 1
        return {
            "first_name": first,
            "last_name": last,
            "date_of_birth": "1984-03-09",
            "gender": "undisclosed",
            "email": f"{first.lower()}.{last.lower()}{self.serial}@example.org",
            "phone": "+44 20 7946 0000",
            "address": f"{self.serial} Harley Street",
            "password": PASSWORD,
            **extra,
        }

    def _token(self, role: str, email: str) -> str:
        answer = self.http.post(f"/{role}s/login", data={"username": email, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def patient(self, first: str, last: str) -> Account:
        answer = self.http.post("/patients/", json=self._person(first, last))
        assert answer.status_code == 201, answer.text
        body = answer.json()
        token = self._token("patient", body["email"])
        return Account("patient", body["id"], body["email"], f"{first} {last}", token)

    def doctor(self, first: str, last: str, specialization_id: int = 1) -> Account:
        body = self._person(first, last, specialization_id=specialization_id)
        answer = self.http.post("/doctors/", json=body)
        assert answer.status_code == 201, answer.text
        created = answer.json()
        token = self._token("doctor", created["email"])
        return Account("doctor", created["id"], created["email"], f"Dr {first} {last}", token)

    def book(self, patient: Account, doctor: Account, start: datetime) -> dict[str, Any]:
        answer = self.http.post(
            "/appointments/",
            json={"doctor_id": doctor.id, "scheduled_datetime": start.isoformat()},
            headers=patient.headers,
        )
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def hold(self, patient: Account, doctor: Account, start: datetime) -> None:
        answer = self.http.post(
            "/appointments/holds",
            json={"doctor_id": doctor.id, "scheduled_datetime": start.isoformat()},
            headers=patient.headers,
        )
        assert answer.status_code == 201, answer.text

    def cancel(self, who: Account, appointment_id: int) -> None:
        answer = self.http.put(
            f"/appointments/{appointment_id}/cancel", json={}, headers=who.headers
        )
        assert answer.status_code == 200, answer.text

    def availability(self, doctor: Account) -> dict[str, Any]:
        answer = self.http.get(f"/doctors/{doctor.id}/availability", headers=doctor.headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def make_admin(raw: Engine, settings: Settings, email: str) -> None:
    """An admin straight into the table, as tests/conftest.World.admin does."""
    passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib)
    # Playwright's event loop runs in this thread: the hub's hashing gets a loop of its own.
    with ThreadPoolExecutor(1) as pool:
        password_hash = pool.submit(asyncio.run, passwords.hash(PASSWORD)).result()
    now = datetime.now(UTC).replace(tzinfo=None)
    with raw.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO admins (email, password_hash, created_at, updated_at) "
                "VALUES (:email, :hash, :now, :now)"
            ),
            {"email": email, "hash": password_hash, "now": now},
        )


def insert_started_appointment(
    raw: Engine, doctor: Account, patient: Account, minutes_ago: int
) -> int:
    """An appointment that began a while ago (the API books only the future)."""
    start = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).replace(
        second=0, microsecond=0, tzinfo=None
    )
    with raw.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO appointments (doctor_id, patient_id, start_at, end_at, status, "
                "late_cancel, created_at, updated_at) VALUES (:doctor, :patient, :start, :end, "
                "'scheduled', :no, :now, :now)"
            ),
            {
                "doctor": doctor.id,
                "patient": patient.id,
                "start": start,
                "end": start + timedelta(hours=1),
                "no": False,
                "now": start,
            },
        )
        return int(
            conn.execute(
                text("SELECT id FROM appointments WHERE doctor_id = :d AND start_at = :s"),
                {"d": doctor.id, "s": start},
            ).scalar_one()
        )


# ---- a hub process that can be killed and started again ---------------------------------


class HubProcess:
    """`python -m hub serve` on a fixed port, with the test's database (and Redis)."""

    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "hub-process.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        self.env.update(
            HUB_DATABASE_URL=settings.database_url,
            HUB_SECRET_KEY=settings.secret_key,
            HUB_DATA_DIR=str(tmp / "hub-process"),
            HUB_ARGON2_TIME_COST="1",
            HUB_ARGON2_MEMORY_KIB="1024",
            HUB_LOG_LEVEL="warning",
            HUB_REGISTRATIONS=str(settings.registrations),
            HUB_MAX_ADDRESS_HOLDS=str(settings.max_address_holds),
            HUB_APPROVE_DOCTORS=str(settings.approve_doctors).lower(),
        )
        if settings.redis_url:
            self.env["HUB_REDIS_URL"] = settings.redis_url
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=2) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the hub exited:\n{self.log.read_text()[-3000:]}")
                try:
                    if client.get(f"{self.url}/specializations/").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the hub did not answer:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.05)

    def kill(self) -> None:
        """Gone at once, as in a crash: no goodbye to any connection."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process = None


@contextmanager
def hub_process(settings: Settings, tmp: Path) -> Iterator[HubProcess]:
    hub = HubProcess(settings, tmp)
    hub.start()
    try:
        yield hub
    finally:
        hub.kill()


# ---- browsers and pages ----------------------------------------------------------------------


class Pages:
    """Browser contexts (one person each) whose uncaught page errors fail the test."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.contexts: list[Any] = []
        self.errors: list[str] = []

    def open(self, url: str, *, zone: str = "UTC", viewport: dict[str, int] | None = None) -> Any:
        context = self.browser.new_context(
            viewport=viewport or DESKTOP, timezone_id=zone, locale="en-GB"
        )
        context.set_default_timeout(SETTLE_MS)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{error}"))
        page.goto(f"{url}/#/login")
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(browser: Any) -> Iterator[Pages]:
    opened = Pages(browser)
    yield opened
    opened.close()
    assert opened.errors == [], "uncaught errors in the pages"


def sign_in(page: Any, account: Account | str, role: str | None = None) -> None:
    email = account if isinstance(account, str) else account.email
    role = role or (account.role if isinstance(account, Account) else "patient")
    label = {
        "patient": "a patient",
        "doctor": "a doctor",
        "admin": "an administrator",
        "staff": "the front desk",
    }[role]
    page.get_by_label(label, exact=True).check()
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")


def open_calendar(page: Any, doctor: Account, moment: datetime, zone: str) -> Any:
    """Pick the specialization, the doctor and the week of `moment`; its slot button."""
    page.get_by_role("button", name=SPECIALIZATION, exact=True).click()
    page.get_by_role("button", name=doctor.name).click()
    for _ in range(weeks_ahead(moment, zone)):
        page.get_by_role("button", name="Next week →").click()
    button = page.locator(f'.slot[data-start="{slot_key(moment)}"]')
    expect(button).to_be_visible()
    return button


def tab_to(page: Any, selector: str, limit: int = 250) -> None:
    """Press Tab until the focused element matches `selector`."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => !!document.activeElement?.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def focus_ring(page: Any) -> str:
    return str(page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle"))


# ---- 1. three people, one calendar, live ---------------------------------------------------


def test_patients_and_the_doctor_see_holds_bookings_and_cancellations_live(
    pages: Pages, settings: Settings
) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Gregory", "House")
        ada = clinic.patient("Ada", "Lovelace")
        blaise = clinic.patient("Blaise", "Pascal")
        start = slot(10, days_ahead=7)

        page_a = pages.open(url, zone="Europe/Berlin")
        sign_in(page_a, ada)
        page_b = pages.open(url, zone="America/New_York")
        sign_in(page_b, blaise)
        page_d = pages.open(url, zone="UTC")
        sign_in(page_d, doctor)
        expect(page_d.get_by_role("heading", level=1)).to_contain_text("Dr Gregory House")

        slot_a = open_calendar(page_a, doctor, start, "Europe/Berlin")
        slot_b = open_calendar(page_b, doctor, start, "America/New_York")
        # Each patient sees the week in their own zone, and is told which zone that is.
        expect(page_a.locator("#zone-note")).to_contain_text("Europe/Berlin")
        expect(page_b.locator("#zone-note")).to_contain_text("America/New_York")
        expect(slot_a.locator(".slot-time")).to_have_text(local_time(start, "Europe/Berlin"))
        expect(slot_b.locator(".slot-time")).to_have_text(local_time(start, "America/New_York"))
        for button in (slot_a, slot_b):
            expect(button).to_have_attribute("data-state", "free")
            expect(button).to_contain_text("Free")

        # A holds the slot: a countdown for A, "held" for B within a second.
        slot_a.click()
        expect(slot_a).to_have_attribute("data-state", "your-hold")
        expect(page_a.locator("#hold-panel .countdown")).to_have_text(re.compile(r"^[12]:\d\d$"))
        expect(slot_b).to_have_attribute("data-state", "held", timeout=LIVE_MS)
        expect(slot_b).to_contain_text("Held")
        expect(page_b.locator("#announcer")).to_contain_text("is now held")

        # B cannot take it: the slot is not actionable, and pressing it anyway explains why.
        expect(slot_b).to_be_disabled()
        slot_b.click(force=True)
        expect(page_b.locator("#book-message")).to_contain_text("Another patient is holding")
        expect(page_b.locator("#hold-panel .confirm")).to_have_count(0)
        expect(slot_b).to_have_attribute("data-state", "held")

        # A confirms: B sees it booked, the doctor sees A's appointment with A's name.
        page_a.get_by_role("button", name="Confirm booking").click()
        row = page_d.locator(".appt", has_text="Ada Lovelace")
        expect(slot_b).to_have_attribute("data-state", "booked", timeout=LIVE_MS)
        expect(row).to_have_attribute("data-status", "scheduled", timeout=LIVE_MS)
        expect(row).to_have_class(re.compile(r"\bis-new\b"))
        expect(row).to_contain_text("New")
        expect(page_d.locator("#notice")).to_contain_text("New booking: Ada Lovelace")
        expect(page_d.locator("#announcer")).to_contain_text("New booking: Ada Lovelace")
        expect(slot_a).to_have_attribute("data-state", "yours")
        expect(slot_a).to_contain_text("Your appointment")
        expect(page_a.locator("#hold-panel")).to_contain_text("Booked.")

        # A cancels from My appointments: B sees the slot free, the doctor sees it cancelled.
        page_a.get_by_role("link", name="See my appointments").click()
        mine = page_a.locator("#upcoming .appt")
        expect(mine).to_have_count(1)
        expect(mine).to_contain_text("Dr Gregory House")
        mine.get_by_role("button", name=re.compile(r"^Cancel the appointment")).click()
        page_a.get_by_role("button", name="Yes, cancel it").click()
        expect(slot_b).to_have_attribute("data-state", "free", timeout=LIVE_MS)
        expect(row).to_have_attribute("data-status", "cancelled", timeout=LIVE_MS)
        expect(row).to_contain_text("Just cancelled")
        expect(page_d.locator("#changes")).to_contain_text("Ada Lovelace")  # out of Upcoming
        expect(page_d.locator("#later")).not_to_contain_text("Ada Lovelace")
        expect(page_d.locator("#notice")).to_contain_text("Cancelled: Ada Lovelace")
        expect(page_a.locator("#past .appt")).to_contain_text("Cancelled")
        expect(page_a.locator("#upcoming")).to_contain_text("No upcoming appointments")
        # B can now take it.
        slot_b.click()
        expect(slot_b).to_have_attribute("data-state", "your-hold")
        page_b.get_by_role("button", name="Cancel", exact=True).click()
        expect(slot_b).to_have_attribute("data-state", "free")


# ---- 2. the hub restarts under the pages ----------------------------------------------------


def test_pages_show_reconnecting_then_live_with_the_right_state_after_a_restart(
    pages: Pages, settings: Settings, tmp_path: Path
) -> None:
    start = slot(10, days_ahead=8)
    other = slot(11, days_ahead=8)
    with hub_process(settings, tmp_path) as hub, Clinic(hub.url) as clinic:
        doctor = clinic.doctor("Lisa", "Cuddy")
        ada = clinic.patient("Ada", "Lovelace")
        blaise = clinic.patient("Blaise", "Pascal")
        first = clinic.book(blaise, doctor, other)

        page_a = pages.open(hub.url, zone="Europe/Berlin")
        sent: list[dict[str, Any]] = []
        page_a.on(
            "websocket",
            lambda ws: ws.on("framesent", lambda frame: sent.append(json.loads(frame))),
        )
        sign_in(page_a, ada)
        slot_a = open_calendar(page_a, doctor, start, "Europe/Berlin")
        slot_other = page_a.locator(f'.slot[data-start="{slot_key(other)}"]')
        page_d = pages.open(hub.url)
        sign_in(page_d, doctor)
        expect(slot_a).to_have_attribute("data-state", "free")
        expect(slot_other).to_have_attribute("data-state", "booked")
        expect(page_d.locator(".appt", has_text="Blaise Pascal")).to_have_count(1)

        hub.kill()
        for page in (page_a, page_d):
            expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
            expect(page.locator("#conn")).to_contain_text("Reconnecting")
        # Nothing can be done meanwhile, and the page says so.
        expect(slot_a).to_be_disabled()
        slot_a.click(force=True)
        expect(page_a.locator("#book-message")).to_contain_text("offline")

        # Changes made while the pages are away: they must show once the pages are back.
        hub.start()
        booked = clinic.book(ada, doctor, start)
        clinic.cancel(blaise, first["id"])
        for page in (page_a, page_d):
            expect(page.locator("#conn")).to_have_attribute(
                "data-state", "live", timeout=RECONNECT_MS
            )
            expect(page.locator("#conn")).to_contain_text("Live")
        expect(slot_a).to_have_attribute("data-state", "yours")
        expect(slot_other).to_have_attribute("data-state", "free")
        expect(slot_other).to_be_enabled()
        ada_row = page_d.locator(f'.appt[data-appointment-id="{booked["id"]}"]')
        expect(ada_row).to_have_attribute("data-status", "scheduled")
        expect(ada_row).to_contain_text("Ada Lovelace")
        expect(page_d.locator(f'.appt[data-appointment-id="{first["id"]}"]')).to_have_attribute(
            "data-status", "cancelled"
        )
        expect(page_a.locator("#announcer")).to_contain_text("Connection is back")
        # The page asked for what it missed, from the last version it had seen.
        auths = [n for n, frame in enumerate(sent) if frame["type"] == "auth"]
        assert len(auths) >= 2, "the page never reconnected"
        rewatch = [f for f in sent[auths[-1] :] if f["type"] == "watch"]
        assert rewatch and rewatch[0]["doctor_id"] == doctor.id and rewatch[0]["since"] >= 1

        # And the live feed works again on the new process.
        clinic.cancel(ada, booked["id"])
        expect(slot_a).to_have_attribute("data-state", "free", timeout=LIVE_MS)
        expect(ada_row).to_have_attribute("data-status", "cancelled", timeout=LIVE_MS)

        # The browser going offline shows as "offline"; back online, it is live again.
        page_a.context.set_offline(True)
        expect(page_a.locator("#conn")).to_have_attribute("data-state", "offline")
        expect(slot_a).to_be_disabled()
        page_a.context.set_offline(False)
        expect(page_a.locator("#conn")).to_have_attribute(
            "data-state", "live", timeout=RECONNECT_MS
        )
        expect(slot_a).to_be_enabled()


# ---- 3. keyboard only -----------------------------------------------------------------------


def test_a_patient_books_with_the_keyboard_alone(pages: Pages, settings: Settings) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("James", "Wilson")
        ada = clinic.patient("Ada", "Lovelace")
        start = slot(14, days_ahead=9)
        page = pages.open(url, zone="Asia/Tokyo")
        keys = page.keyboard

        tab_to(page, 'input[name="username"]')
        keys.type(ada.email)
        keys.press("Tab")
        keys.type(PASSWORD)
        keys.press("Enter")
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        expect(page.get_by_role("heading", level=1)).to_have_text("Book an appointment")

        tab_to(page, "button.choice[data-key='spec-1']")
        assert focus_ring(page) != "none"
        keys.press("Enter")
        tab_to(page, f"button.choice[data-key='doctor-{doctor.id}']")
        keys.press("Space")
        expect(page.locator(f"button[data-key='doctor-{doctor.id}']")).to_have_attribute(
            "aria-pressed", "true"
        )
        tab_to(page, "#next-week")
        for _ in range(weeks_ahead(start, "Asia/Tokyo")):
            keys.press("Enter")
            expect(page.locator("#next-week")).to_be_focused()
        target = page.locator(f'.slot[data-start="{slot_key(start)}"]')
        expect(target).to_have_attribute("data-state", "free")
        tab_to(page, f'.slot[data-start="{slot_key(start)}"]')
        assert focus_ring(page) != "none"
        keys.press("Enter")
        expect(target).to_have_attribute("data-state", "your-hold")
        confirm = page.get_by_role("button", name="Confirm booking")
        expect(confirm).to_be_focused()
        keys.press("Space")
        expect(target).to_have_attribute("data-state", "yours")
        expect(page.locator("#hold-panel")).to_contain_text("Booked.")
        expect(page.get_by_role("link", name="See my appointments")).to_be_focused()
        keys.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text("My appointments")
        expect(page.locator("#upcoming .appt")).to_contain_text("Dr James Wilson")
        expect(page.locator("#upcoming .appt")).to_contain_text(local_time(start, "Asia/Tokyo"))


# ---- 4. the server's own words, where they belong -------------------------------------------


def test_server_messages_show_next_to_fields_and_actions(
    pages: Pages, settings: Settings, raw: Engine
) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Meredith", "Grey")
        ada = clinic.patient("Ada", "Lovelace")
        blaise = clinic.patient("Blaise", "Pascal")
        page_d = pages.open(url)
        sign_in(page_d, doctor)
        form = page_d.locator("form.hours-form")
        expect(form).to_be_visible()

        # 422 fields from the hub appear next to the fields they name.
        monday = form.locator('fieldset[data-field="weekly.monday"]')
        monday.get_by_label("Monday, interval 1, from").fill("17:00")
        monday.get_by_label("Monday, interval 1, until").fill("09:00")
        form.get_by_label("Time zone").fill("Mars/Olympus_Mons")
        form.get_by_role("button", name="Save working hours").click()
        expect(form.locator('[data-field="weekly.monday.0"] .field-error')).to_contain_text(
            "Start must be before end"
        )
        expect(form.locator('[data-field="timezone"] .field-error')).to_contain_text(
            "Unknown time zone"
        )
        expect(form.get_by_label("Time zone")).to_have_attribute("aria-invalid", "true")
        expect(page_d.locator("#hours-message")).to_contain_text("2 problems")

        # Fixed: a break on Mondays, 30-minute slots, a day off, and a 30-day cancel cutoff.
        form.get_by_label("Time zone").fill("Europe/London")
        monday.get_by_label("Monday, interval 1, from").fill("09:00")
        monday.get_by_label("Monday, interval 1, until").fill("12:00")
        monday.get_by_role("button", name="Add hours on Monday").click()
        monday.get_by_label("Monday, interval 2, from").fill("13:00")
        monday.get_by_label("Monday, interval 2, until").fill("17:00")
        form.get_by_label("Slot length (minutes)").fill("30")
        off = next_workday(20)
        form.get_by_role("button", name="Add days off").click()
        form.locator('[data-field="overrides.0.from"] input').fill(off.isoformat())
        form.get_by_label("Patients may cancel until").fill(str(30 * 24 * 60))
        form.get_by_role("button", name="Save working hours").click()
        expect(page_d.locator("#hours-message")).to_contain_text("Working hours saved")
        expect(form.locator(".field-error")).to_have_count(0)
        saved = clinic.availability(doctor)
        assert saved["timezone"] == "Europe/London"
        assert saved["slot_minutes"] == 30
        assert saved["weekly"]["monday"] == [
            {"start": "09:00", "end": "12:00"},
            {"start": "13:00", "end": "17:00"},
        ]
        assert saved["overrides"] == [
            {"from": off.isoformat(), "to": off.isoformat(), "intervals": []}
        ]
        assert saved["policy"]["cancel_cutoff_minutes"] == 30 * 24 * 60

        # The cutoff: a patient's cancellation is refused, in the hub's words.
        start = datetime.combine(next_workday(3), datetime.min.time(), ZoneInfo("Europe/London"))
        start = start.replace(hour=10)
        clinic.book(ada, doctor, start)
        page_a = pages.open(url)
        sign_in(page_a, ada)
        page_a.get_by_role("link", name="My appointments").click()
        item = page_a.locator("#upcoming .appt")
        item.get_by_role("button", name=re.compile(r"^Cancel the appointment")).click()
        page_a.get_by_role("button", name="Yes, cancel it").click()
        expect(item.locator(".message.error")).to_contain_text(
            "Too late to change: Appointments can be cancelled up to 720 hours before they start."
        )
        expect(item).to_have_attribute("data-status", "scheduled")

        # Complete and no-show on appointments that have begun, in the doctor's list.
        began = insert_started_appointment(raw, doctor, blaise, minutes_ago=20)
        page_d.reload()
        row = page_d.locator(f'.appt[data-appointment-id="{began}"]')
        if not row.is_visible():  # just after midnight it is yesterday's
            page_d.locator("details.earlier:not(.changes) summary").click()
        expect(row).to_contain_text("Blaise Pascal")
        row.get_by_role("button", name=re.compile(r"^No-show")).click()
        expect(row).to_have_attribute("data-status", "no_show")
        expect(row).to_contain_text("No-show")
        # The patient reads the same word for it.
        page_b = pages.open(url)
        sign_in(page_b, blaise)
        page_b.get_by_role("link", name="My appointments").click()
        missed = page_b.locator(f'#past .appt[data-appointment-id="{began}"]')
        expect(missed.locator(".badge")).to_have_text("No-show")

        # The admin page: a new specialization, and a taken name refused next to the field.
        make_admin(raw, settings, "admin@example.org")
        page_x = pages.open(url)
        sign_in(page_x, "admin@example.org", role="admin")
        name = page_x.get_by_label("Name", exact=True)
        name.fill("Sports Medicine")
        page_x.get_by_role("button", name="Add specialization").click()
        expect(page_x.locator("#specializations")).to_contain_text("Sports Medicine")
        name.fill("Cardiology")
        page_x.get_by_role("button", name="Add specialization").click()
        expect(page_x.locator('[data-field="name"] .field-error')).to_contain_text("already exists")
        expect(page_x.locator("#doctors-table")).to_contain_text("Dr Meredith Grey")
        expect(page_x.locator("#patients-table")).to_contain_text("Blaise Pascal")


# ---- 5. rescheduling, and a hold that runs out ----------------------------------------------


def test_a_patient_reschedules_and_an_unconfirmed_hold_runs_out(
    pages: Pages, settings: Settings
) -> None:
    with run_server(dataclasses.replace(settings, hold_ttl=3)) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Miranda", "Bailey")
        ada = clinic.patient("Ada", "Lovelace")
        old, new = slot(10, days_ahead=7), slot(15, days_ahead=7)
        booked = clinic.book(ada, doctor, old)
        page_d = pages.open(url)
        sign_in(page_d, doctor)
        page = pages.open(url, zone="Europe/Berlin")
        sign_in(page, ada)

        page.get_by_role("link", name="My appointments").click()
        page.locator("#upcoming .appt").get_by_role("link", name="Reschedule").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Reschedule an appointment")
        expect(page.locator(".banner")).to_contain_text("You are moving your appointment")
        current = page.locator(f'.slot[data-start="{slot_key(old)}"]')
        target = page.locator(f'.slot[data-start="{slot_key(new)}"]')
        expect(current).to_have_attribute("data-state", "current")
        expect(current).to_contain_text("Your current time")

        # A hold nobody confirms: the countdown runs out and the slot is free again.
        target.click()
        expect(target).to_have_attribute("data-state", "your-hold")
        expect(page.locator("#hold-panel .countdown")).to_have_text(re.compile(r"^0:0[0-3]$"))
        # Said by the countdown, or by the slot's own `free` event if that comes first.
        ended = re.compile(r"Your hold (ran out|on this time has ended)")
        expect(page.locator("#book-message")).to_contain_text(ended, timeout=6000)
        expect(page.locator("#hold-panel .countdown")).to_have_count(0)
        expect(target).to_have_attribute("data-state", "free", timeout=3000)

        # Picked again and confirmed: the appointment moves.
        target.click()
        page.get_by_role("button", name="Move my appointment here").click()
        expect(page.locator("#hold-panel")).to_contain_text("Moved.")
        expect(target).to_have_attribute("data-state", "yours")
        expect(current).to_have_attribute("data-state", "free", timeout=LIVE_MS)
        expect(page.locator(".banner")).to_be_hidden()
        expect(page_d.locator("#notice")).to_contain_text(
            "Rescheduled: Ada Lovelace", timeout=LIVE_MS
        )
        moved_from = page_d.locator(f'.appt[data-appointment-id="{booked["id"]}"]')
        expect(moved_from).to_have_attribute("data-status", "cancelled")
        expect(moved_from).to_contain_text(f"moved to {new.strftime('%a %-d %b')}, 15:00")
        page.get_by_role("link", name="See my appointments").click()
        expect(page.locator("#upcoming .appt")).to_have_count(1)
        expect(page.locator("#upcoming .appt")).to_contain_text(local_time(new, "Europe/Berlin"))


# ---- 5b. the front desk books by phone while a patient watches -------------------------------


def test_the_front_desk_books_for_a_caller_while_another_patient_sees_it_live(
    pages: Pages, settings: Settings, raw: Engine
) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Miranda", "Bailey")
        clinic.patient("Grace", "Hopper")  # who calls
        watcher = clinic.patient("Ada", "Lovelace")
        add_desk(clinic, admin_token(clinic, raw, settings))
        moment = slot(9, days_ahead=8)  # the day's first free time, which the desk picks
        page_w = pages.open(url)
        sign_in(page_w, watcher)
        watched = open_calendar(page_w, doctor, moment, "UTC")
        expect(watched).to_have_attribute("data-state", "free")
        page = pages.open(url)
        sign_in(page, "desk@example.org", role="staff")
        expect(page.get_by_role("heading", level=1)).to_have_text("Front desk")
        page.get_by_label("Name, email, phone or date of birth").fill("Hopper")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("button", name=re.compile("Grace Hopper")).click()
        page.get_by_label("Doctor").select_option(label=doctor.name)
        page.get_by_label("Day").fill(moment.date().isoformat())
        page.get_by_role("button", name="Show free times").click()
        page.locator(".desk-times button").first.click()
        expect(page.locator("#desk-book-message")).to_contain_text("Booked")
        expect(watched).to_have_attribute("data-state", "booked", timeout=LIVE_MS)
        expect(page.locator("#desk-appointments")).to_contain_text("Scheduled")


def test_a_doctor_cancels_with_a_reason_and_the_patients_page_shows_it(
    pages: Pages, settings: Settings
) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Miranda", "Bailey")
        ada = clinic.patient("Ada", "Lovelace")
        booked = clinic.book(ada, doctor, slot(10, days_ahead=7))
        page_d = pages.open(url)
        sign_in(page_d, doctor)
        item = page_d.locator(f'.appt[data-appointment-id="{booked["id"]}"]')
        item.get_by_role("button", name=re.compile("^Cancel: Ada Lovelace")).click()
        item.get_by_role("button", name="Cancel the appointment").click()  # no reason yet
        expect(item.locator('[data-field="reason"] .field-error')).to_contain_text("why")
        item.get_by_label("Reason the patient is told").fill("The clinic is closed that day")
        item.get_by_role("button", name="Cancel the appointment").click()
        expect(item).to_contain_text("Cancelled")
        page = pages.open(url)
        sign_in(page, ada)
        page.get_by_role("link", name="My appointments").click()
        expect(page.locator("main")).to_contain_text("The clinic is closed that day")


# ---- 6. an admin approves a doctor who registered ------------------------------------------


def test_an_admin_approves_a_pending_doctor_who_is_then_listed(
    pages: Pages, settings: Settings, raw: Engine
) -> None:
    with (
        run_server(dataclasses.replace(settings, approve_doctors=True)) as url,
        Clinic(url) as clinic,
    ):
        doctor = clinic.doctor("Cristina", "Yang")
        assert doctor.id not in [d["id"] for d in clinic.http.get("/doctors/").json()]
        make_admin(raw, settings, "admin@example.org")
        page = pages.open(url)
        sign_in(page, "admin@example.org", role="admin")
        row = page.locator("#doctors-table tr", has_text="Cristina Yang")
        expect(row).to_contain_text("Pending approval")
        row.get_by_role("button", name="Approve Dr Cristina Yang").click()
        expect(row).to_contain_text("Approved")
        assert doctor.id in [d["id"] for d in clinic.http.get("/doctors/").json()]
        row.get_by_role("button", name="Deactivate Dr Cristina Yang").click()
        expect(row).to_contain_text("Deactivated")
        assert doctor.id not in [d["id"] for d in clinic.http.get("/doctors/").json()]


# ---- 7. a sign-in that outlives its token and is shared by every tab -----------------------


def test_a_new_tab_is_signed_in_and_a_page_outlives_its_access_token(
    pages: Pages, settings: Settings
) -> None:
    with run_server(dataclasses.replace(settings, token_ttl=3)) as url, Clinic(url) as clinic:
        ada = clinic.patient("Ada", "Lovelace")
        page = pages.open(url)
        sign_in(page, ada)
        other = page.context.new_page()  # a second tab of the same browser
        other.on("pageerror", lambda error: pages.errors.append(f"{error}"))
        other.goto(url)
        expect(other.get_by_role("link", name="My appointments")).to_be_visible()
        expect(other.locator("#conn")).to_have_attribute("data-state", "live")
        page.wait_for_timeout(4000)  # the access token's 3 s are up
        page.get_by_role("link", name="My appointments").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("My appointments")
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        other.get_by_role("button", name="Sign out").click()
        expect(other.get_by_role("button", name="Sign in")).to_be_visible()


# ---- 7b. the rules shown before a hold, long names, a phone's calendar ---------------------

LONG_NAME = "Otorhinolaryngologyandheadandnecksurgerytypotypoty"  # 50 characters, one word


def admin_token(clinic: Clinic, raw: Engine, settings: Settings) -> dict[str, str]:
    make_admin(raw, settings, "admin@example.org")
    return {"Authorization": f"Bearer {clinic._token('admin', 'admin@example.org')}"}


def add_desk(clinic: Clinic, admin: dict[str, str]) -> None:
    """The front-desk account desk@example.org, made by an admin."""
    desk = {"first_name": "Rita", "last_name": "Desk", "email": "desk@example.org"}
    made = clinic.http.post("/staff/", json={**desk, "password": PASSWORD}, headers=admin)
    assert made.status_code == 201, made.text


def add_specialization(clinic: Clinic, admin: dict[str, str], name: str) -> int:
    answer = clinic.http.post("/specializations/", json={"name": name}, headers=admin)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def page_width(page: Any) -> int:
    return int(page.evaluate("() => document.documentElement.scrollWidth"))


def test_the_cancel_cutoff_and_a_refused_second_booking_show_before_a_hold(
    pages: Pages, settings: Settings
) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Lisa", "Cuddy")
        ada, blaise = clinic.patient("Ada", "Lovelace"), clinic.patient("Blaise", "Pascal")
        clinic.book(ada, doctor, slot(10))
        start = slot(11)

        # Blaise may book: the rule for cancelling shows before anything is held...
        page_b = pages.open(url)
        sign_in(page_b, blaise)
        button = open_calendar(page_b, doctor, start, "UTC")
        rule = page_b.locator("#cancel-policy")
        expect(rule).to_contain_text("Free cancellation until 24 hours before the visit.")
        expect(rule).to_contain_text("cannot be cancelled online once booked")
        expect(page_b.locator("#one-per-patient")).to_be_hidden()
        # ...and once held, the time it runs to for this slot.
        button.click()
        expect(button).to_have_attribute("data-state", "your-hold")
        until = (start - timedelta(days=1)).strftime("%H:%M")
        expect(page_b.locator("#hold-panel")).to_contain_text("Free cancellation until")
        expect(page_b.locator("#hold-panel")).to_contain_text(until)

        # Ada has her one appointment with this doctor: told before the click, refused on it.
        page_a = pages.open(url)
        sign_in(page_a, ada)
        other = open_calendar(page_a, doctor, slot(12), "UTC")
        notice = page_a.locator("#one-per-patient")
        expect(notice).to_contain_text("one upcoming appointment per patient")
        expect(notice.get_by_role("link", name="Reschedule it")).to_be_visible()
        other.click()
        expect(page_a.locator("#book-message")).to_contain_text(
            "You already have an upcoming appointment with this doctor"
        )
        expect(other).to_have_attribute("data-state", "free")
        day = slot(12).date().isoformat()
        calendar = clinic.http.get(f"/doctors/{doctor.id}/slots?from={day}&to={day}").json()
        states = {s["start"]: s["state"] for s in calendar["slots"]}
        assert states[iso(slot(12))] == "free"  # no hold was granted


def test_an_answer_cut_short_is_a_failed_request_not_an_empty_list(
    pages: Pages, settings: Settings
) -> None:
    # A hub restarting mid-answer: a 200 whose JSON stops halfway. The page's own appointments
    # are then unknown (the request failed), never a null to iterate (an uncaught TypeError).
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Derek", "Shepherd")
        ada = clinic.patient("Ada", "Lovelace")
        booked = slot(10)
        clinic.book(ada, doctor, booked)
        page = pages.open(url)
        cut = {"status": 200, "content_type": "application/json", "body": '[{"id": 1, "doc'}
        page.route(f"**/appointments/patient/{ada.id}", lambda route: route.fulfill(**cut))
        sign_in(page, ada)
        open_calendar(page, doctor, booked, "UTC")
        expect(page.locator(".week")).to_be_visible()
    # The pages fixture then finds no uncaught error in the page.


def test_a_phone_fits_a_50_character_specialization_and_the_calendar_comes_up(
    pages: Pages, settings: Settings, raw: Engine
) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        admin = admin_token(clinic, raw, settings)
        sid = add_specialization(clinic, admin, LONG_NAME)
        doctor = clinic.doctor("Derek", "Shepherd", specialization_id=sid)
        ada = clinic.patient("Ada", "Lovelace")
        booked = slot(10)
        clinic.book(ada, doctor, booked)
        page = pages.open(url, viewport=PHONE)
        sign_in(page, ada)
        page.get_by_role("button", name=LONG_NAME).click()
        expect(page.get_by_role("button", name=doctor.name)).to_be_visible()
        assert page_width(page) <= PHONE["width"]
        page.get_by_role("button", name=doctor.name).click()
        # This week comes up first (from a Friday evening on it has no free time left), then
        # the week of the booking with its times.
        expect(page.locator(".week")).to_be_visible()
        for _ in range(weeks_ahead(booked, "UTC")):
            page.get_by_role("button", name="Next week →").click()
        expect(page.locator(f'.slot[data-start="{slot_key(booked)}"]')).to_be_visible()
        assert page_width(page) <= PHONE["width"]
        page.evaluate("() => window.scrollTo(0, 0)")
        calendar = page.locator("section.calendar").bounding_box()
        assert calendar is not None and calendar["y"] < 400, calendar
        # The choices fold into one line, and come back to change the doctor.
        expect(page.locator("#picked")).to_contain_text(doctor.name)
        page.get_by_role("button", name=re.compile(r"^Change")).click()
        expect(page.get_by_role("button", name=doctor.name)).to_be_visible()

        page.get_by_role("link", name="My appointments").click()
        expect(page.locator("#upcoming .appt")).to_have_count(1)
        assert page_width(page) <= PHONE["width"]
        page.get_by_role("button", name="Sign out").click()
        sign_in(page, "admin@example.org", role="admin")
        expect(page.locator("#doctors-table")).to_contain_text(LONG_NAME)
        assert page_width(page) <= PHONE["width"]


def test_slot_times_are_at_least_16_px(pages: Pages, settings: Settings) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("James", "Wilson")
        ada = clinic.patient("Ada", "Lovelace")
        for viewport in (DESKTOP, PHONE):
            page = pages.open(url, viewport=viewport)
            sign_in(page, ada)
            open_calendar(page, doctor, slot(10), "UTC")
            sizes = page.eval_on_selector_all(
                ".slot-time", "els => els.map(e => parseFloat(getComputedStyle(e).fontSize))"
            )
            assert sizes and min(sizes) >= 16, sizes


def test_an_admin_renames_and_removes_specializations(
    pages: Pages, settings: Settings, raw: Engine
) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        admin = admin_token(clinic, raw, settings)
        add_specialization(clinic, admin, "Sleep Medcine")
        clinic.doctor("Meredith", "Grey")  # Cardiology is in use
        page = pages.open(url)
        sign_in(page, "admin@example.org", role="admin")
        specs = page.locator("#specializations")

        page.get_by_role("button", name="Rename Sleep Medcine").click()
        field = page.get_by_label("New name for Sleep Medcine")
        field.fill("cardiology")
        page.get_by_role("button", name="Save name").click()
        expect(specs.locator(".field-error")).to_contain_text("already exists")
        field.fill("Sleep Medicine")
        page.get_by_role("button", name="Save name").click()
        expect(specs).to_contain_text("Sleep Medicine")
        expect(specs).not_to_contain_text("Medcine")

        page.get_by_role("button", name="Remove Cardiology").click()
        expect(specs.locator('li[data-id="1"] .message.error')).to_contain_text("a doctor has it")
        page.get_by_role("button", name="Remove Sleep Medicine").click()
        expect(specs).not_to_contain_text("Sleep Medicine")
        names = [s["name"] for s in clinic.http.get("/specializations/").json()]
        assert "Sleep Medicine" not in names and SPECIALIZATION in names


# ---- 8. screenshots --------------------------------------------------------------------------


def test_screenshots_of_every_page(
    pages: Pages, settings: Settings, raw: Engine, backend: str
) -> None:
    if backend != "embedded":
        pytest.skip("the pages look the same on every backend: shot once")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Gregory", "House")
        ada = clinic.patient("Ada", "Lovelace")
        blaise = clinic.patient("Blaise", "Pascal")
        start = slot(10, days_ahead=7)
        carol = clinic.patient("Carol", "Shields")
        clinic.book(blaise, doctor, slot(11, days_ahead=7))
        clinic.book(ada, doctor, slot(14, days_ahead=7))
        clinic.hold(carol, doctor, slot(15, days_ahead=7))  # "Held" on Blaise's calendar
        later = slot(10, days_ahead=8).date().isoformat()  # a free time: offered at once
        waiting = clinic.http.post(
            "/waitlist",
            json={"doctor_id": doctor.id, "from": later, "to": later},
            headers=carol.headers,
        )
        assert waiting.status_code == 201 and waiting.json()["offer"], waiting.text
        insert_started_appointment(raw, doctor, ada, minutes_ago=5)
        admin = admin_token(clinic, raw, settings)
        long = add_specialization(clinic, admin, LONG_NAME)  # how a long name wraps
        clinic.doctor("Derek", "Shepherd", specialization_id=long)
        add_desk(clinic, admin)

        for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):

            def shoot(page: Any, name: str, width: str = width) -> None:
                page.wait_for_timeout(300)  # let the focus ring and fonts settle
                page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)

            page = pages.open(url, zone="Europe/Berlin", viewport=viewport)
            expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
            shoot(page, "login")
            page.get_by_role("link", name="Create an account").click()
            page.get_by_label("a doctor").check()
            page.get_by_role("button", name="Create account").click()
            expect(page.locator(".field-error").first).to_be_visible()
            shoot(page, "register")

            page.get_by_role("link", name="Sign in").first.click()
            sign_in(page, carol)
            button = open_calendar(page, doctor, start, "Europe/Berlin")
            expect(page.locator("#cancel-policy")).to_be_visible()
            button.click()
            expect(page.locator("#hold-panel .countdown")).to_be_visible()
            shoot(page, "book")
            page.get_by_role("button", name="Cancel", exact=True).click()
            page.get_by_role("link", name="My appointments", exact=True).click()
            expect(page.locator("#waitlist-section .offer-clock")).to_contain_text("held for you")
            shoot(page, "waitlist")
            page.get_by_role("button", name="Sign out").click()

            sign_in(page, blaise)
            open_calendar(page, doctor, start, "Europe/Berlin")
            expect(page.locator("#one-per-patient")).to_be_visible()
            shoot(page, "book-refused")
            page.get_by_role("link", name="My appointments").click()
            expect(page.locator("#upcoming .appt")).to_have_count(1)
            shoot(page, "mine")
            page.get_by_role("button", name="Sign out").click()

            sign_in(page, doctor)
            expect(page.locator(".appt")).to_have_count(3)
            expect(page.locator("form.hours-form")).to_be_visible()
            shoot(page, "dashboard")
            page.get_by_role("button", name="Sign out").click()

            sign_in(page, "admin@example.org", role="admin")
            expect(page.locator("#patients-table tbody tr")).to_have_count(3)
            shoot(page, "admin")
            page.get_by_role("button", name="Sign out").click()

            sign_in(page, "desk@example.org", role="staff")
            page.get_by_label("Name, email, phone or date of birth").fill("Lovelace")
            page.get_by_role("button", name="Search").click()
            page.get_by_role("button", name=re.compile("Ada Lovelace")).click()
            expect(page.locator("#desk-appointments li")).to_have_count(2)
            shoot(page, "desk")
            page.get_by_role("link", name="Clinic's day").click()
            # The desk's page has a Day field too: fill the day page's, once it is there.
            expect(page.get_by_role("heading", level=1)).to_have_text("Clinic's day")
            page.get_by_label("Day", exact=True).fill(start.date().isoformat())
            page.get_by_label("Day", exact=True).press("Tab")  # the change reads the day
            expect(page.locator("main")).to_contain_text("Blaise Pascal")
            shoot(page, "day")
            page.context.close()
    names = sorted(path.name for path in SHOTS.glob("*.png"))
    shown = ("login", "register", "book", "book-refused", "mine", "waitlist", "dashboard", "admin")
    for name in (*shown, "desk", "day"):
        assert {f"{name}-desktop.png", f"{name}-phone.png"} <= set(names)


# ---- 9. the clinic's day, live, and the doctor's lists without what was cancelled -----------

DASH = "\N{EN DASH}"  # between a visit's start and end
REREAD_MS = LIVE_MS + 1000  # the event within LIVE_MS, then the page reads the day again


def test_the_front_desk_sees_the_clinics_day_live_and_moves_and_cancels_from_it(
    pages: Pages, settings: Settings, raw: Engine
) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        house = clinic.doctor("Gregory", "House")
        bailey = clinic.doctor("Miranda", "Bailey")
        ada = clinic.patient("Ada", "Lovelace")
        blaise = clinic.patient("Blaise", "Pascal")
        add_desk(clinic, admin_token(clinic, raw, settings))
        day = slot(10).date().isoformat()
        first = clinic.book(blaise, bailey, slot(9))
        page = pages.open(url)
        sign_in(page, "desk@example.org", role="staff")
        page.get_by_role("link", name="Clinic's day").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Clinic's day")
        page.get_by_label("Day").fill(day)
        column = page.locator(f'.doctor-day[data-doctor-id="{house.id}"]')
        expect(column).to_contain_text("No appointments.")
        other = page.locator(f'.doctor-day[data-doctor-id="{bailey.id}"]')
        expect(other.locator(f'.appt[data-appointment-id="{first["id"]}"]')).to_contain_text(
            "Blaise Pascal"
        )
        page.evaluate("() => { window.notReloaded = true; }")

        # A patient books with House: it shows on the desk's page by itself.
        booked = clinic.book(ada, house, slot(10))
        item = column.locator(f'.appt[data-appointment-id="{booked["id"]}"]')
        expect(item).to_contain_text("Ada Lovelace", timeout=REREAD_MS)
        expect(item).to_contain_text(f"10:00{DASH}11:00")
        expect(item).to_contain_text("+44 20 7946 0000")
        assert page.evaluate("() => window.notReloaded") is True

        # Moved to 14:00 from the day itself.
        item.get_by_role("button", name=f"Move: Ada Lovelace, 10:00{DASH}11:00").click()
        item.get_by_role("button", name="Show free times").click()
        item.get_by_role("button", name="14:00").click()
        expect(page.locator("#day-message")).to_contain_text("Ada Lovelace moved to")
        moved = column.locator(".day-list .appt", has_text="Ada Lovelace")
        expect(moved).to_contain_text(f"14:00{DASH}15:00")
        expect(column.locator(".day-changes")).to_contain_text("moved to")

        # Cancelled with the reason the patient is told (none: refused next to the field).
        moved.get_by_role("button", name=re.compile("^Cancel: Ada Lovelace")).click()
        moved.get_by_role("button", name="Cancel the appointment").click()
        expect(moved.locator('[data-field="reason"] .field-error')).to_contain_text("why")
        moved.get_by_label("Reason the patient is told").fill("Dr House is away")
        moved.get_by_role("button", name="Cancel the appointment").click()
        expect(column.locator(".day-list")).to_contain_text("No appointments.")
        expect(column.locator(".day-changes summary")).to_have_text("Cancelled and moved (2)")
        expect(column.locator(".day-changes")).to_contain_text("Dr House is away")

        # Book: the front desk's booking, with that doctor and day chosen.
        column.get_by_role("link", name=re.compile("^Book with Dr Gregory House")).click()
        expect(page.locator("#desk-wanted")).to_contain_text(day)
        page.get_by_label("Name, email, phone or date of birth").fill("Pascal")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("button", name=re.compile("Blaise Pascal")).click()
        expect(page.get_by_label("Doctor")).to_have_value(str(house.id))
        expect(page.locator(".desk-times button").first).to_be_visible()


def test_the_clinics_day_shows_a_booking_made_before_its_watch_began(
    pages: Pages, settings: Settings, raw: Engine
) -> None:
    # The page reads the day, then starts watching each doctor: a booking in between is in
    # the watch's snapshot only, never in an event. The page's watch is held back until the
    # booking is in.
    with run_server(settings) as url, Clinic(url) as clinic:
        house = clinic.doctor("Gregory", "House")
        ada = clinic.patient("Ada", "Lovelace")
        add_desk(clinic, admin_token(clinic, raw, settings))
        day = slot(10).date().isoformat()
        booked: list[dict[str, Any]] = []

        def between(ws: Any) -> None:
            server = ws.connect_to_server()

            def to_server(message: str | bytes) -> None:
                command = json.loads(message)
                if (
                    not booked
                    and command.get("type") == "watch"
                    and command.get("doctor_id") == house.id
                    and command.get("from") == day
                ):
                    booked.append(clinic.book(ada, house, slot(10)))
                server.send(message)

            ws.on_message(to_server)

        page = pages.open(url)
        page.route_web_socket(re.compile(r"/ws"), between)
        sign_in(page, "desk@example.org", role="staff")
        page.get_by_role("link", name="Clinic's day").click()
        page.get_by_label("Day").fill(day)
        column = page.locator(f'.doctor-day[data-doctor-id="{house.id}"]')
        expect(page.locator("#day-title")).not_to_be_empty()
        item = column.locator(".appt", has_text="Ada Lovelace")
        expect(item).to_contain_text(f"10:00{DASH}11:00", timeout=REREAD_MS)
        assert booked and item.get_attribute("data-appointment-id") == str(booked[0]["id"])


def test_a_doctors_upcoming_keeps_cancelled_and_moved_entries_under_changes(
    pages: Pages, settings: Settings
) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Miranda", "Bailey")
        ada = clinic.patient("Ada", "Lovelace")
        blaise = clinic.patient("Blaise", "Pascal")
        carol = clinic.patient("Carol", "Shields")
        kept = clinic.book(carol, doctor, slot(9, days_ahead=7))
        dropped = clinic.book(ada, doctor, slot(10, days_ahead=7))
        clinic.cancel(ada, dropped["id"])
        moving = clinic.book(blaise, doctor, slot(11, days_ahead=7))
        new = slot(15, days_ahead=7)
        answer = clinic.http.put(
            f"/appointments/{moving['id']}/reschedule",
            json={"scheduled_datetime": iso(new)},
            headers=blaise.headers,
        )
        assert answer.status_code == 200, answer.text
        page = pages.open(url)
        sign_in(page, doctor)
        upcoming = page.locator("#later")
        expect(upcoming.locator(".appt")).to_have_count(2)  # Carol's, and Blaise's new time
        expect(upcoming.locator(f'[data-appointment-id="{kept["id"]}"]')).to_be_visible()
        expect(upcoming).not_to_contain_text("Ada Lovelace")
        changes = page.locator("details.changes")
        expect(changes).not_to_have_attribute("open", "")
        expect(changes.locator("summary")).to_contain_text("(2)")
        gone = changes.locator(f'[data-appointment-id="{dropped["id"]}"]')
        expect(gone).to_be_hidden()  # collapsed
        changes.locator("summary").click()
        expect(gone).to_be_visible()
        expect(gone).to_contain_text("Ada Lovelace")
        expect(gone).to_contain_text("Cancelled")
        away = changes.locator(f'[data-appointment-id="{moving["id"]}"]')
        expect(away).to_contain_text(f"moved to {new.strftime('%a %-d %b')}, 15:00")
        expect(away).not_to_contain_text("rescheduled")


# ---- the waitlist: a freed slot offered on the patient's page -------------------------------


def test_a_waitlisted_patient_receives_an_offer_on_their_page_and_accepts_it(
    pages: Pages, settings: Settings
) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Miranda", "Bailey")
        moment = slot(9, days_ahead=7)
        day = moment.date()
        booked = [
            clinic.book(clinic.patient("Crowd", f"Member{n}"), doctor, moment.replace(hour=hour))
            for n, hour in enumerate(range(9, 17))
        ]  # the doctor's whole day
        ada = clinic.patient("Ada", "Lovelace")
        page = pages.open(url)
        sign_in(page, ada)
        slot_button = open_calendar(page, doctor, moment, "UTC")
        expect(slot_button).to_have_attribute("data-state", "booked")
        card = page.locator("#waitlist-card")
        expect(card).to_contain_text("No time that suits you?")
        card.get_by_label("From").fill(day.isoformat())
        card.get_by_label("To").fill(day.isoformat())
        card.get_by_role("button", name="Join the waitlist").click()
        expect(page.locator("#waitlist-message")).to_contain_text("number 1 in line")
        page.get_by_role("link", name="My appointments", exact=True).click()
        section = page.locator("#waitlist-section")
        expect(section).to_contain_text("Number 1 in line")
        freed = booked[3]
        answer = clinic.http.put(
            f"/appointments/{freed['id']}/cancel",
            json={"reason": "the patient moved away"},
            headers=doctor.headers,
        )
        assert answer.status_code == 200, answer.text
        expect(section).to_contain_text("A time is held for you", timeout=LIVE_MS)
        expect(section.locator(".offer-clock")).to_contain_text("held for you for")
        section.get_by_role("button", name="Accept this time").click()
        expect(page.locator("#waitlist-section-message")).to_contain_text("Booked")
        expect(page.locator("#upcoming")).to_contain_text("12:00")
        expect(section.locator(".waitlist-entry")).to_have_count(0)  # off the list: booked


def test_the_front_desk_puts_a_caller_on_the_waitlist_of_a_full_day(
    pages: Pages, settings: Settings, raw: Engine
) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Miranda", "Bailey")
        grace = clinic.patient("Grace", "Hopper")
        moment = slot(9, days_ahead=7)
        for n, hour in enumerate(range(9, 17)):
            clinic.book(clinic.patient("Crowd", f"Member{n}"), doctor, moment.replace(hour=hour))
        add_desk(clinic, admin_token(clinic, raw, settings))
        page = pages.open(url)
        sign_in(page, "desk@example.org", role="staff")
        page.get_by_label("Name, email, phone or date of birth").fill("Hopper")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("button", name=re.compile("Grace Hopper")).click()
        page.get_by_label("Doctor").select_option(label=doctor.name)
        page.get_by_label("Day").fill(moment.date().isoformat())
        page.get_by_role("button", name="Show free times").click()
        expect(page.locator(".desk-times")).to_contain_text("No free time that day")
        page.get_by_label("Urgent").check()
        page.get_by_role("button", name="Put on the waitlist for this day").click()
        expect(page.locator("#desk-book-message")).to_contain_text("number 1 in line")
        listed = clinic.http.get("/waitlist", headers=grace.headers).json()
        assert [(e["doctor_id"], e["urgent"], e["position"]) for e in listed] == [
            (doctor.id, True, 1)
        ]


FEED_SHOTS = SHOTS  # beside every other page's


def test_a_patient_turns_the_calendar_feed_on_and_adds_an_appointment_to_their_calendar(
    pages: Pages, settings: Settings
) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Miranda", "Bailey")
        ada = clinic.patient("Ada", "Lovelace")
        booked = clinic.book(ada, doctor, slot(10))
        FEED_SHOTS.mkdir(parents=True, exist_ok=True)
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page = pages.open(url, viewport=viewport)
            sign_in(page, ada)
            page.get_by_role("link", name="My appointments", exact=True).click()
            card = page.locator(".feed-card")
            card.get_by_role("button", name="Turn on").click()
            field = card.get_by_label("Your feed URL")
            expect(field).to_have_value(re.compile(r"/feeds/[A-Za-z0-9_-]+\.ics$"))
            webcal = card.get_by_role("link", name="Open in your calendar app")
            expect(webcal).to_have_attribute("href", re.compile(r"^webcal://"))
            answer = httpx.get(url + "/feeds/" + field.input_value().split("/feeds/", 1)[1])
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "text/calendar; charset=utf-8"
            assert b"BEGIN:VEVENT" in answer.content
            assert page_width(page) <= viewport["width"]
            card.scroll_into_view_if_needed()
            card.screenshot(path=str(FEED_SHOTS / f"feed-patient-{name}.png"))
            with page.expect_download() as download:
                page.get_by_role("link", name=re.compile("to your calendar")).click()
            assert download.value.suggested_filename == f"appointment-{booked['id']}.ics"
            saved = Path(download.value.path()).read_bytes()
            assert b"METHOD:REQUEST" in saved
            page.locator(f'li[data-appointment-id="{booked["id"]}"]').screenshot(
                path=str(FEED_SHOTS / f"appointment-row-{name}.png")
            )
            card.get_by_role("button", name="Turn off").click()
            expect(card.locator(".message")).to_contain_text("no longer works")
            assert httpx.get(answer.url).status_code == 404


def test_a_doctor_turns_the_feed_on_with_patient_names(pages: Pages, settings: Settings) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Miranda", "Bailey")
        clinic.book(clinic.patient("Ada", "Lovelace"), doctor, slot(10))
        page = pages.open(url, viewport=PHONE)
        sign_in(page, doctor)
        card = page.locator(".feed-card")
        card.get_by_label("Show patient names").check()
        card.get_by_role("button", name="Turn on").click()
        field = card.get_by_label("Your feed URL")
        expect(field).to_have_value(re.compile(r"\.ics$"))
        feed = httpx.get(url + "/feeds/" + field.input_value().split("/feeds/", 1)[1])
        assert b"Ada Lovelace" in feed.content
        assert page_width(page) <= PHONE["width"]
        card.scroll_into_view_if_needed()
        FEED_SHOTS.mkdir(parents=True, exist_ok=True)
        card.screenshot(path=str(FEED_SHOTS / "feed-doctor-phone.png"))


def test_a_manage_link_cancels_its_appointment_and_is_used_after(
    pages: Pages, settings: Settings, raw: Engine
) -> None:
    from tests.test_manage import manage_token

    with run_server(settings) as url, Clinic(url) as clinic:
        doctor = clinic.doctor("Miranda", "Bailey")
        ada = clinic.patient("Ada", "Lovelace")
        booked = clinic.book(ada, doctor, slot(10, days_ahead=7))
        token = manage_token(settings, raw, booked["id"])
        page = pages.open(url, viewport=PHONE)  # not signed in: the link is the key
        page.goto(f"{url}/#/manage?token={token}")
        expect(page.locator("main")).to_contain_text("Dr Miranda Bailey, Cardiology")
        expect(page.locator("#manage-policy")).to_contain_text("Free cancellation until 24 hours")
        expect(page.locator("#manage-cancelling")).to_contain_text("Free cancellation until")
        assert page_width(page) <= PHONE["width"]
        page.get_by_role("button", name="Cancel appointment").click()
        page.get_by_label("Reason (optional)").fill("Feeling better")
        page.get_by_role("button", name="Yes, cancel it").click()
        expect(page.locator("#manage-done")).to_contain_text("is cancelled")
        expect(page.locator("main")).to_contain_text("This link has now been used")
        page.reload()
        expect(page.locator("#manage-gone")).to_have_text(
            "This link has been used or has expired. Sign in to manage your appointments."
        )
        mine = clinic.http.get(f"/appointments/patient/{ada.id}", headers=ada.headers).json()
        assert [(a["status"], a["cancel_reason"]) for a in mine] == [
            ("cancelled", "Feeling better")
        ]


# ---- verified addresses and password reset ---------------------------------------------------

ADDRESS_SHOTS = SHOTS
NEW_PASSWORD = "a brand new passphrase"


def link_token(raw: Engine, kind: str, account_id: int) -> str:
    """The token of the newest `kind` link written for a patient (as the sender reads it)."""
    with raw.connect() as conn:
        payload = conn.execute(
            text(
                "SELECT payload FROM notifications WHERE kind = :k AND role = 'patient'"
                " AND account_id = :a ORDER BY id DESC LIMIT 1"
            ),
            {"k": kind, "a": account_id},
        ).scalar_one()
    return str((json.loads(payload) if isinstance(payload, str | bytes) else payload)["token"])


def test_a_forgotten_password_is_set_again_through_the_emailed_link(
    pages: Pages, settings: Settings, raw: Engine
) -> None:
    ADDRESS_SHOTS.mkdir(parents=True, exist_ok=True)
    with run_server(settings) as url, Clinic(url) as clinic:
        ada = clinic.patient("Ada", "Lovelace")
        page = pages.open(url)
        page.get_by_role("link", name="Forgot your password?").click()
        expect(page.locator("h1")).to_have_text("Forgot your password?")
        page.get_by_label("Email address").fill(ada.email)
        page.get_by_role("button", name="Send me a link").click()
        expect(page.locator("#forgot-message")).to_contain_text("If an account with this email")
        page.goto(f"{url}/#/reset?token={link_token(raw, 'reset', ada.id)}")
        expect(page.locator("h1")).to_have_text("Set a new password")
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("The same again").fill(NEW_PASSWORD + "!")
        page.get_by_role("button", name="Set the new password").click()
        expect(page.locator(".field-error")).to_have_text("The two passwords differ.")
        page.get_by_label("The same again").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Set the new password").click()
        expect(page.locator("h1")).to_have_text("Sign in")
        expect(page.locator("main")).to_contain_text("Your new password is set")
        page.get_by_label("Email address").fill(ada.email)
        page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        expect(page.locator("#who")).to_contain_text("Ada Lovelace")
        expect(page.locator("#verify-note")).to_be_hidden()  # the reset proved the address
        page.goto(f"{url}/#/reset?token={link_token(raw, 'reset', ada.id)}")
        page.get_by_label("New password", exact=True).fill("yet another passphrase")
        page.get_by_label("The same again").fill("yet another passphrase")
        page.get_by_role("button", name="Set the new password").click()
        expect(page.locator("#reset-message")).to_contain_text("used already or has expired")


def test_an_unverified_patient_is_asked_to_verify_and_the_link_verifies(
    pages: Pages, settings: Settings, raw: Engine
) -> None:
    ADDRESS_SHOTS.mkdir(parents=True, exist_ok=True)
    with run_server(settings) as url, Clinic(url) as clinic:
        for width, viewport in ((1280, DESKTOP), (375, PHONE)):
            grace = clinic.patient("Grace", "Hopper")
            page = pages.open(url, viewport=viewport)
            expect(page.get_by_role("link", name="Forgot your password?")).to_be_visible()
            page.screenshot(path=str(ADDRESS_SHOTS / f"login-{width}.png"), full_page=True)
            page.get_by_role("link", name="Forgot your password?").click()
            page.get_by_label("the front desk").check()
            page.get_by_label("Email address").fill("nobody@example.org")
            page.get_by_role("button", name="Send me a link").click()
            expect(page.locator("#forgot-message")).to_be_visible()
            assert page_width(page) <= viewport["width"]
            page.screenshot(path=str(ADDRESS_SHOTS / f"forgot-{width}.png"), full_page=True)
            page.goto(f"{url}/#/reset?token=not-a-real-token")
            page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
            page.get_by_label("The same again").fill(NEW_PASSWORD)
            page.get_by_role("button", name="Set the new password").click()
            expect(page.locator("#reset-message")).to_contain_text("used already or has expired")
            assert page_width(page) <= viewport["width"]
            page.screenshot(path=str(ADDRESS_SHOTS / f"reset-{width}.png"), full_page=True)
            page.goto(f"{url}/#/login")
            sign_in(page, grace)
            note = page.locator("#verify-note")
            expect(note).to_contain_text("Please verify your email address")
            page.get_by_role("button", name="Send the link again").click()
            expect(note).to_contain_text("A new link to verify your email address is on its way")
            assert page_width(page) <= viewport["width"]
            page.screenshot(path=str(ADDRESS_SHOTS / f"verify-note-{width}.png"))
            page.goto(f"{url}/#/verify?token={link_token(raw, 'verify', grace.id)}")
            expect(page.locator("#verify-message")).to_have_text(
                "Thank you: your email address is verified."
            )
            assert page_width(page) <= viewport["width"]
            page.screenshot(path=str(ADDRESS_SHOTS / f"verify-{width}.png"), full_page=True)
            page.get_by_role("link", name="Go to booking").click()
            expect(page.locator("h1")).to_have_text("Book an appointment")
            expect(page.locator("#verify-note")).to_be_hidden()


def test_a_patient_turns_reminders_off_on_their_page(pages: Pages, settings: Settings) -> None:
    with run_server(settings) as url, Clinic(url) as clinic:
        ada = clinic.patient("Ada", "Lovelace")
        page = pages.open(url)
        sign_in(page, ada)
        page.get_by_role("link", name="My appointments", exact=True).click()
        box = page.get_by_label("Reminders before an appointment")
        expect(box).to_be_checked()
        box.uncheck()
        expect(page.locator("#announcer")).to_contain_text("Off: Reminders")
        saved = clinic.http.get(f"/patients/{ada.id}/notifications", headers=ada.headers)
        assert saved.json()["reminder"] is False
        page.reload()
        expect(page.get_by_label("Reminders before an appointment")).not_to_be_checked()
