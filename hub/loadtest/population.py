from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hub.loadtest.clients import Api
from hub.loadtest.options import Options
from hub.loadtest.tokens import TokenCache

HORIZON_DAYS = 730  # the longest horizon the hub accepts
EVERY_DAY = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class SetupFailed(Exception):
    """The hub refused to create, sign in or configure a load account."""


@dataclass(frozen=True, slots=True)
class Account:
    role: str
    number: int
    id: int
    token: str

    @property
    def email(self) -> str:
        return email(self.role, self.number)


def prefix(role: str) -> str:
    return f"load-{role}-"


def email(role: str, number: int) -> str:
    return f"{prefix(role)}{number}@load.example"


def _person(role: str, number: int, password: str, specialization: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "first_name": "Load",
        "last_name": f"{role.title()} {number}",
        "date_of_birth": "1980-01-01",
        "gender": "undisclosed",
        "email": email(role, number),
        "phone": "+44 20 7946 0000",
        "address": f"{number} Load Street",
        "password": password,
    }
    if role == "doctor":
        body["specialization_id"] = specialization
    return body


async def _specialization(api: Api) -> int:
    answer = await api.call("GET", "/specializations/")
    if answer.status != 200 or not answer.body:
        raise SetupFailed(f"GET /specializations/: {answer.outcome}")
    return int(answer.body[0]["id"])


async def login(api: Api, role: str, number: int, password: str) -> tuple[str, int]:
    """A token and its lifetime in seconds."""
    form = {"username": email(role, number), "password": password}
    answer = await api.call("POST", f"/{role}s/login", form=form)
    if answer.status != 200:
        raise SetupFailed(f"login of {email(role, number)}: {answer.outcome}")
    return str(answer.body["access_token"]), int(answer.body["expires_in"])


async def register(
    api: Api, role: str, numbers: range, options: Options, *, signed_in: bool = True
) -> list[Account]:
    """Create (or reuse, by their deterministic emails) these accounts, signed in when
    `signed_in` (else with no token, and id 0 for an account that already existed); with
    `options.tokens`, a sign-in kept from an earlier run is used instead of a new one."""
    specialization = await _specialization(api) if role == "doctor" else 0
    cache = TokenCache(options.tokens, api.url)
    if signed_in:
        await _still_valid(api, role, numbers, cache)
    gate = asyncio.Semaphore(8)  # each registration and login is an argon2 hash in the hub

    async def one(number: int) -> Account:
        if signed_in and (kept := cache.get(email(role, number))) is not None:
            return Account(role, number, *kept)
        async with gate:
            body = _person(role, number, options.password, specialization)
            answer = await api.call("POST", f"/{role}s/", body=body)
            if answer.status == 201:
                id_ = int(answer.body["id"])
            elif answer.outcome == "409 email_taken":
                id_ = 0
            else:
                raise SetupFailed(f"registration of {email(role, number)}: {answer.outcome}")
            if not signed_in:
                return Account(role, number, id_, "")
            token, expires_in = await login(api, role, number, options.password)
            me = await api.call("GET", f"/{role}s/me", token=token)
            id_ = int(me.body["id"])
            if role == "doctor" and not me.body.get("approved", True):
                await _approve(api, id_, options)
            cache.put(email(role, number), id_, token, expires_in)
            return Account(role, number, id_, token)

    try:
        return list(await asyncio.gather(*(one(n) for n in numbers)))
    finally:
        cache.save()


async def _approve(api: Api, doctor_id: int, options: Options) -> None:
    # The hub lists and books a self-registered doctor only once an admin approved them.
    if not (options.admin_email and options.admin_password):
        raise SetupFailed(
            "this hub vets doctors: give --admin-email (and HUB_ADMIN_PASSWORD), or run the "
            "hub with HUB_APPROVE_DOCTORS=false"
        )
    form = {"username": options.admin_email, "password": options.admin_password}
    signed_in = await api.call("POST", "/admins/login", form=form)
    if signed_in.status != 200:
        raise SetupFailed(f"admin login: {signed_in.outcome}")
    token = str(signed_in.body["access_token"])
    path = f"/doctors/{doctor_id}/approval"
    answer = await api.call("PUT", path, token=token, body={"approved": True})
    if answer.status != 200:
        raise SetupFailed(f"approval of doctor {doctor_id}: {answer.outcome}")


async def _still_valid(api: Api, role: str, numbers: range, cache: TokenCache) -> None:
    # A hub whose secret or database changed refuses kept tokens, or names someone else.
    for number in numbers:
        if (kept := cache.get(email(role, number))) is not None:
            me = await api.call("GET", f"/{role}s/me", token=kept[1])
            if me.status != 200 or me.body.get("id") != kept[0]:
                cache.forget(prefix(role))
            return


async def open_hours(api: Api, doctor: Account, slot_minutes: int) -> None:
    """Every day 00:00-24:00 in UTC, no notice, the longest horizon, and rules that let
    the load book, cancel and reschedule freely."""
    body = {
        "timezone": "UTC",
        "weekly": {day: [{"start": "00:00", "end": "24:00"}] for day in EVERY_DAY},
        "slot_minutes": slot_minutes,
        "buffer_minutes": 0,
        "notice_minutes": 0,
        "horizon_days": HORIZON_DAYS,
        "policy": {"cancel_cutoff_minutes": 0, "allow_late_cancel": True, "one_per_patient": False},
    }
    answer = await api.call(
        "PUT", f"/doctors/{doctor.id}/availability", token=doctor.token, body=body
    )
    if answer.status != 200:
        raise SetupFailed(f"availability of doctor {doctor.id}: {answer.outcome}")


async def doctors(api: Api, count: int, options: Options) -> list[Account]:
    made = await register(api, "doctor", range(count), options)
    await asyncio.gather(*(open_hours(api, doctor, options.slot_minutes) for doctor in made))
    return made


def tomorrow() -> date:
    return datetime.now(UTC).date() + timedelta(days=1)


async def free_starts(api: Api, doctor_id: int, first: date, last: date | None = None) -> list[str]:
    """The free starts of a doctor from `first` to `last` (inclusive, at most 31 days)."""
    params = {"from": first.isoformat(), "to": (last or first).isoformat()}
    answer = await api.call("GET", f"/doctors/{doctor_id}/slots", params=params)
    if answer.status != 200:
        return []
    return [slot["start"] for slot in answer.body["slots"] if slot["state"] == "free"]


class SlotSource:
    """Free (doctor, start) pairs no other load process or doctor of this run uses: day k
    after tomorrow belongs to doctor k % D and to process (k // D) % P, so no two bookings of
    a run share a start (no `patient_busy`); pairs come round-robin over the doctors, each
    doctor's day fetched from the hub when the last one runs out."""

    def __init__(
        self, api: Api, doctor_ids: list[int], index: int, procs: int, spread: int = 0
    ) -> None:
        self._api = api
        self._doctors = doctor_ids
        count = spread or len(doctor_ids)
        self._days = [
            deque(
                k
                for k in range(HORIZON_DAYS - 1)
                if k % count == j and (k // count) % procs == index
            )
            for j in range(len(doctor_ids))
        ]
        self._ready: list[deque[str]] = [deque() for _ in doctor_ids]
        self._turn = 0
        self._lock = asyncio.Lock()

    async def next(self) -> tuple[int, str] | None:
        """The next free pair; None when every day of this process is used up."""
        async with self._lock:
            for _ in range(len(self._doctors)):
                j = self._turn
                self._turn = (self._turn + 1) % len(self._doctors)
                if await self._fill(j):
                    return self._doctors[j], self._ready[j].popleft()
            return None

    async def prime(self) -> None:
        """Fetch each doctor's first day now, before the clock starts."""
        async with self._lock:
            for j in range(len(self._doctors)):
                await self._fill(j)

    async def _fill(self, j: int) -> bool:
        while not self._ready[j] and self._days[j]:
            day = tomorrow() + timedelta(days=self._days[j].popleft())
            self._ready[j].extend(await free_starts(self._api, self._doctors[j], day))
        return bool(self._ready[j])

    async def take(self, count: int) -> list[tuple[int, str]]:
        taken: list[tuple[int, str]] = []
        while len(taken) < count and (pair := await self.next()) is not None:
            taken.append(pair)
        return taken
