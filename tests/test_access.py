"""Object-level access control: every REST route against every kind of caller.

The matrix has one row per (route, target) and one expected status per principal, in the
order of WHO. One walk over it reports every mismatch at once. Reads run before writes, so
the listings are checked against the world exactly as `_setup` built it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from sqlalchemy import text

from hub import access
from hub.addresses import verify_print
from hub.app import ENDPOINTS
from hub.auth import Principal, Role
from hub.links import Links
from tests.conftest import PASSWORD, Actor, World, iso, next_workday, slot
from tests.test_manage import manage_token

WHO = ("anon", "A", "B", "X", "Y", "admin", "staff")
PUBLIC = {"id", "first_name", "last_name", "specialization", "address"}
PRIVATE = {"email", "phone", "date_of_birth", "gender"}


@dataclass
class Ctx:
    world: World
    actors: dict[str, Actor]
    appointment: int  # A with X, in the future
    bystander: Actor  # a third doctor, for bookings that must not touch X or Y
    slots: Iterator[datetime]
    serial: Iterator[int]
    held: list[str] = field(default_factory=list)
    waiting: int | None = None  # an entry of A on X's waitlist, for the reads
    feed_url: str | None = None  # A's calendar feed, for the reads

    def headers(self, who: str) -> dict[str, str]:
        return {} if who == "anon" else self.actors[who].headers

    def id(self, target: str | int) -> int:
        if isinstance(target, int):
            return target
        if target == "appt":
            return self.appointment
        if target == "stranger":  # erasing changes state: each case erases a patient of its own
            return self.world.patient().id
        if target == "fresh":  # cancelling changes state: each case gets its own appointment
            actors = self.actors
            return int(self.world.book(actors["A"], actors["X"], next(self.slots))["id"])
        if target == "entry":
            self.waiting = self.waiting or self.entry()
            return self.waiting
        if target == "fresh_entry":  # leaving changes state: each case gets its own entry
            return self.entry()
        if target == "offer":  # accepting or declining ends it: each case gets its own
            return self.offer()
        return self.actors[target].id

    def unwait(self) -> None:
        """Nobody on a waitlist any more, so that A may join X's again."""
        with self.world.raw.begin() as conn:
            conn.execute(text("UPDATE waitlist_entries SET status = 'left' WHERE live = 1"))

    def entry(self) -> int:
        """A on X's waitlist, added by the desk, for a Saturday (X does not work then: no
        offer is made at once)."""
        self.unwait()
        body = {"doctor_id": self.actors["X"].id, "patient_id": self.actors["A"].id, **SATURDAY}
        answer = self.world.client.post("/waitlist", json=body, headers=self.headers("staff"))
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])

    def offer(self) -> int:
        """An open offer to A of one of X's slots (written as the matcher writes one)."""
        entry_id, start = self.entry(), next(self.slots).replace(tzinfo=None)
        with self.world.raw.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO waitlist_offers (entry_id, doctor_id, patient_id, start_at,"
                    " end_at, state, created_at, expires_at) VALUES (:e, :d, :p, :s, :end,"
                    " 'open', :now, :until)"
                ),
                {
                    "e": entry_id,
                    "d": self.actors["X"].id,
                    "p": self.actors["A"].id,
                    "s": start,
                    "end": start + timedelta(hours=1),
                    "now": datetime.now(UTC).replace(tzinfo=None),
                    "until": datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=10),
                },
            )
            conn.execute(
                text("UPDATE waitlist_entries SET status = 'offered' WHERE id = :e"),
                {"e": entry_id},
            )
            return int(
                conn.execute(
                    text("SELECT id FROM waitlist_offers WHERE entry_id = :e"), {"e": entry_id}
                ).scalar_one()
            )

    def hold(self) -> str:  # releasing changes state: each case gets its own hold by A
        a = self.actors["A"].headers
        while self.held:  # what a refused release left behind, so A stays under the cap
            self.world.client.delete(f"/appointments/holds/{self.held.pop()}", headers=a)
        body = {"doctor_id": self.bystander.id, "scheduled_datetime": iso(next(self.slots))}
        answer = self.world.client.post(
            "/appointments/holds", json=body, headers=self.actors["A"].headers
        )
        assert answer.status_code == 201, answer.text
        self.held.append(str(answer.json()["hold_id"]))
        return self.held[-1]

    def feed(self) -> str:
        """The path of A's calendar feed (turned on by an admin, once)."""
        if self.feed_url is None:
            answer = self.world.client.post(
                f"/patients/{self.actors['A'].id}/calendar-feed", headers=self.headers("admin")
            )
            assert answer.status_code == 200, answer.text
            self.feed_url = str(answer.json()["url"])
        return "/feeds/" + self.feed_url.split("/feeds/", 1)[1]

    def link(self, target: str) -> str:
        """A manage link's token: of the appointment the reads see, or of a fresh one (a
        cancel or a move uses its link up)."""
        appointment = self.appointment if target == "link" else self.id("fresh")
        return manage_token(self.world.settings, self.world.raw, appointment)

    def sees_in_full(self, who: str, doctor_id: int) -> bool:
        return who == "admin" or (who in ("X", "Y") and self.actors[who].id == doctor_id)


Send = Callable[[Ctx], dict[str, Any]]
Check = Callable[[Any, str, Ctx], bool]


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # the template, exactly as in hub.app.ENDPOINTS
    target: str | int | None  # what {id:int} stands for
    expect: tuple[int, int, int, int, int, int, int]  # anon, A, B, X, Y, admin, staff
    send: Send | None = None  # extra request arguments (json, data, params)
    check: Check | None = None  # on the body, when the status is as expected (not 401/403)


def _login(who: str) -> Send:
    return lambda c: {"data": {"username": c.actors[who].email, "password": PASSWORD}}


def _doctor_view(doctor: Any, who: str, c: Ctx) -> bool:
    if c.sees_in_full(who, doctor["id"]):
        return doctor.keys() >= PRIVATE
    return set(doctor) == PUBLIC


def _staff(c: Ctx) -> dict[str, str]:
    n = next(c.serial)
    return {"first_name": "Desk", "last_name": f"Clerk {n}", "email": f"desk{n}@example.org",
            "password": PASSWORD}  # fmt: skip


def _join(c: Ctx) -> dict[str, Any]:
    c.unwait()
    return {"json": {"doctor_id": c.id("X"), "patient_id": c.id("A"), **SATURDAY}}


def _verify_link(c: Ctx) -> str:
    a = c.actors["A"]
    return Links(c.world.settings).sign("verify", f"patient:{a.id}", verify_print(a.email))


def _ids(body: Any) -> list[int]:
    return [item["id"] for item in body]


def _own_patients(body: Any, who: str, c: Ctx) -> bool:
    a, b = c.actors["A"].id, c.actors["B"].id
    if who == "staff":  # the desk searches: a listing without `q` is a 422
        return bool(body["error"] == "invalid")
    return _ids(body) == {"X": [a], "Y": [], "admin": sorted([a, b])}[who]


def _token(body: Any, who: str, c: Ctx) -> bool:
    return bool(body["access_token"])


def _slot_identity(body: Any, who: str, c: Ctx) -> bool:
    booked = [s for s in body["slots"] if s["start"] == iso(slot(10))]
    shown = booked[0]["patient_id"] if booked else "missing"
    return shown == (c.id("A") if who in ("A", "X", "admin", "staff") else None)


def _clinic_day(body: Any, who: str, c: Ctx) -> bool:
    by_doctor = {day["doctor"]["id"]: day["appointments"] for day in body}
    (seen,) = by_doctor[c.id("X")]
    doctors = {c.id("X"), c.id("Y"), c.bystander.id}
    patient = {"id", "first_name", "last_name", "phone"}  # no more than the desk needs
    return (
        set(by_doctor) == doctors
        and seen["id"] == c.appointment
        and set(seen["patient"]) == patient
    )


_MONDAY = next_workday(70) - timedelta(days=next_workday(70).weekday())
SATURDAY = {"from": (_MONDAY + timedelta(days=5)).isoformat()}
SATURDAY["to"] = SATURDAY["from"]
HOURS = {
    "weekly": {
        d: [{"start": "09:00", "end": "17:00"}]
        for d in ("monday", "tuesday", "wednesday", "thursday", "friday")
    },
    "policy": {"one_per_patient": False},  # the "fresh" cases book A with X again and again
}
PATIENT, DOCTOR, APPT = "/patients/{id:int}", "/doctors/{id:int}", "/appointments/{id:int}"
MANAGE = "/manage/{token:str}"
OPEN, OPEN_201 = (200,) * 7, (201,) * 7
ADMIN_200, ADMIN_204 = (401, 403, 403, 403, 403, 200, 403), (401, 403, 403, 403, 403, 204, 403)
ADMIN_201 = (401, 403, 403, 403, 403, 201, 403)
MATRIX = [
    Row("POST", "/patients/login", None, OPEN, _login("A"), _token),
    Row("POST", "/doctors/login", None, OPEN, _login("X"), _token),
    Row("POST", "/admins/login", None, OPEN, _login("admin"), _token),
    Row("POST", "/patients/", None, OPEN_201, lambda c: {"json": c.world.person()}),
    Row(
        "POST",
        "/doctors/",
        None,
        OPEN_201,
        lambda c: {"json": c.world.person(specialization_id=1)},
    ),
    Row("GET", "/patients/", None, (401, 403, 403, 200, 200, 200, 422), check=_own_patients),
    Row(
        "GET",
        "/patients/me",
        None,
        (401, 200, 200, 403, 403, 403, 403),
        check=lambda b, who, c: b["id"] == c.id(who),
    ),
    Row(
        "GET",
        PATIENT,
        "A",
        (401, 200, 403, 200, 403, 200, 200),
        check=lambda b, who, c: b["id"] == c.id("A") and "email" in b,
    ),
    Row("GET", PATIENT, "B", (401, 403, 200, 403, 403, 200, 200)),
    Row(
        "PUT",
        PATIENT,
        "A",
        (401, 200, 403, 403, 403, 200, 403),
        lambda c: {"json": {"address": "x"}},
    ),
    Row(
        "GET",
        "/doctors/",
        None,
        OPEN,
        check=lambda b, who, c: all(_doctor_view(d, who, c) for d in b),
    ),
    Row(
        "GET",
        "/doctors/me",
        None,
        (401, 403, 403, 200, 200, 403, 403),
        check=lambda b, who, c: b["id"] == c.id(who) and b.keys() >= PRIVATE,
    ),
    Row("GET", DOCTOR, "X", OPEN, check=_doctor_view),
    Row("GET", DOCTOR, "Y", OPEN, check=_doctor_view),
    Row(
        "PUT",
        DOCTOR,
        "X",
        (401, 403, 403, 200, 403, 200, 403),
        lambda c: {"json": {"address": "y"}},
    ),
    Row(
        "POST",
        "/specializations/",
        None,
        ADMIN_201,
        lambda c: {"json": {"name": f"Speciality {next(c.serial)}"}},
    ),
    Row("GET", DOCTOR + "/availability", "X", (401, 403, 403, 200, 403, 200, 403)),
    Row(
        "PUT",
        DOCTOR + "/availability",
        "X",
        (401, 403, 403, 200, 403, 200, 403),
        lambda c: {"json": HOURS},
    ),
    Row(
        "GET",
        DOCTOR + "/slots",
        "X",
        OPEN,
        lambda c: {
            "params": {"from": slot(10).date().isoformat(), "to": slot(10).date().isoformat()}
        },
        _slot_identity,
    ),
    Row("GET", DOCTOR + "/visit-types", "X", OPEN),
    Row(
        "PUT",
        DOCTOR + "/visit-types",
        "X",
        (401, 403, 403, 200, 403, 200, 403),
        lambda c: {"json": [{"name": "Consultation", "minutes": 60}]},
    ),
    Row("GET", "/specializations/", None, OPEN),
    Row("GET", "/specializations/{id:int}", 1, OPEN, check=lambda b, who, c: b["id"] == 1),
    Row(
        "PUT",
        "/specializations/{id:int}",
        1,
        ADMIN_200,
        lambda c: {"json": {"name": "Cardiology"}},  # its own name: the others keep theirs
    ),
    Row("DELETE", "/specializations/{id:int}", 1, (401, 403, 403, 403, 403, 409, 403)),  # in use
    Row(
        "POST",
        "/appointments/",
        None,
        (401, 201, 201, 403, 403, 403, 422),  # not a doctor's own; the desk says for whom (below)
        lambda c: {"json": {"doctor_id": c.bystander.id, "scheduled_datetime": iso(next(c.slots))}},
        lambda b, who, c: b["patient_id"] == c.id(who),
    ),
    Row(
        "GET",
        "/appointments/patient/{id:int}",
        "A",
        (401, 200, 403, 403, 403, 200, 200),
        check=lambda b, who, c: _ids(b) == [c.appointment],
    ),
    Row("GET", "/appointments/patient/{id:int}", "B", (401, 403, 200, 403, 403, 200, 200)),
    Row(
        "GET",
        "/appointments/doctor/{id:int}",
        "X",
        (401, 403, 403, 200, 403, 200, 200),
        check=lambda b, who, c: _ids(b) == [c.appointment],
    ),
    Row("GET", "/appointments/doctor/{id:int}", "Y", (401, 403, 403, 403, 200, 200, 200)),
    Row(
        "PUT",
        APPT + "/cancel",
        "fresh",
        (401, 200, 403, 200, 403, 200, 200),
        lambda c: {"json": {"reason": "the doctor is away"}},
    ),
    Row(
        "PUT",
        APPT + "/reschedule",
        "fresh",
        (401, 200, 403, 200, 403, 200, 200),
        lambda c: {"json": {"scheduled_datetime": iso(next(c.slots))}},
        lambda b, who, c: b["status"] == "scheduled" and b["rescheduled_from_id"] is not None,
    ),
    Row(
        "PUT",
        APPT + "/no-show",
        "appt",  # in the future: its doctor is let in, then refused by the state machine
        (401, 403, 403, 409, 403, 403, 403),
        check=lambda b, who, c: b["error"] == "invalid_transition",
    ),
    Row(
        "GET",
        APPT + "/history",
        "appt",
        (401, 200, 403, 200, 403, 200, 200),
        check=lambda b, who, c: [e["to_status"] for e in b] == ["scheduled"],
    ),
    Row(
        "POST",
        "/appointments/holds",
        None,
        (401, 201, 201, 403, 403, 403, 403),
        lambda c: {"json": {"doctor_id": c.bystander.id, "scheduled_datetime": iso(next(c.slots))}},
        lambda b, who, c: b["hold_id"].split("-")[2] == str(c.id(who)),
    ),
    Row("DELETE", "/appointments/holds/{hold_id:str}", "hold", (401, 204, 403, 403, 403, 403, 403)),
    Row(
        "PUT",
        APPT + "/complete",
        "appt",  # in the future: its doctor is let in, then refused by the state machine
        (401, 403, 403, 409, 403, 403, 403),
        check=lambda b, who, c: b["error"] == "invalid_transition",
    ),
    Row(
        "GET",
        "/appointments/doctor/{id:int}/available-slots",
        "X",
        OPEN,
        lambda c: {"params": {"date": slot(10).date().isoformat()}},
        lambda b, who, c: b["doctor_id"] == c.id("X") and iso(slot(10)) not in b["slots"],
    ),
    Row("PUT", DOCTOR + "/approval", "Y", ADMIN_200, lambda c: {"json": {"approved": True}}),
    Row("PUT", PATIENT + "/active", "B", ADMIN_204, lambda c: {"json": {"active": True}}),
    Row("PUT", DOCTOR + "/active", "Y", ADMIN_204, lambda c: {"json": {"active": True}}),
    Row("PUT", "/admins/{id:int}/active", "admin", ADMIN_204, lambda c: {"json": {"active": True}}),
    Row("PUT", "/staff/{id:int}/active", "staff", ADMIN_204, lambda c: {"json": {"active": True}}),
    Row("POST", "/staff/login", None, OPEN, _login("staff"), _token),
    Row("POST", "/staff/", None, ADMIN_201, lambda c: {"json": _staff(c)}),
    Row("GET", "/staff/", None, ADMIN_200),
    Row("GET", "/staff/me", None, (401, 403, 403, 403, 403, 403, 200)),
    Row(
        "POST",
        "/staff/patients",
        None,
        (401, 403, 403, 403, 403, 201, 201),
        lambda c: {"json": {k: v for k, v in c.world.person().items() if k != "password"}},
    ),
    Row(
        "POST",
        "/appointments/",
        "for",  # with the patient it is for: the desk books for anyone, a doctor in their own
        (401, 201, 403, 201, 403, 403, 201),
        lambda c: {
            "json": {
                "doctor_id": c.id("X"),
                "scheduled_datetime": iso(next(c.slots)),
                "patient_id": c.id("A"),
            }
        },
        lambda b, who, c: b["patient_id"] == c.id("A"),
    ),
    Row(
        "GET",
        "/appointments/day",
        None,
        (401, 403, 403, 403, 403, 200, 200),
        lambda c: {"params": {"date": slot(10).date().isoformat()}},
        _clinic_day,
    ),
    Row(
        "POST",
        "/waitlist",
        None,
        (401, 201, 403, 201, 403, 403, 201),  # for A on X's list: A, X (own), the desk
        _join,
        lambda b, who, c: b["patient_id"] == c.id("A") and b["doctor_id"] == c.id("X"),
    ),
    Row(
        "GET",
        "/waitlist",
        None,
        (401, 200, 200, 200, 200, 200, 200),
        lambda c: {"params": {}} if c.id("entry") else {},  # the entry the reads look for
        lambda b, who, c: [e["id"] for e in b] == ([] if who in ("B", "Y") else [c.id("entry")]),
    ),
    Row(
        "GET",
        "/waitlist/{id:int}",
        "entry",
        (401, 200, 404, 200, 404, 200, 200),
        check=lambda b, who, c: b.get("patient_id", b.get("error")) in (c.id("A"), "not_found"),
    ),
    Row("DELETE", "/waitlist/{id:int}", "fresh_entry", (401, 204, 404, 204, 404, 204, 204)),
    Row(
        "POST",
        "/waitlist/offers/{id:int}/accept",
        "offer",
        (401, 200, 404, 200, 404, 200, 200),  # it moves A's appointment with X (admins may)
        check=lambda b, who, c: b.get("patient_id", b.get("error")) in (c.id("A"), "not_found"),
    ),
    Row(
        "POST",
        "/waitlist/offers/{id:int}/decline",
        "offer",
        (401, 204, 404, 204, 404, 204, 204),
    ),
    Row("GET", PATIENT + "/notifications", "A", (401, 200, 403, 403, 403, 200, 403)),
    Row(
        "PUT",
        PATIENT + "/notifications",
        "A",
        (401, 200, 403, 403, 403, 200, 403),
        lambda c: {"json": {"reminder": True}},
        lambda b, who, c: b["reminder"] is True,
    ),
    Row("GET", DOCTOR + "/notifications", "X", (401, 403, 403, 200, 403, 200, 403)),
    Row(
        "PUT",
        DOCTOR + "/notifications",
        "X",
        (401, 403, 403, 200, 403, 200, 403),
        lambda c: {"json": {"booked": True}},
    ),
    Row("GET", "/audit", None, ADMIN_200),
    # Without a refresh cookie (the walk's clients send none): nothing to renew, nothing to end.
    Row("POST", "/auth/refresh", None, (401,) * 7),
    Row("POST", "/auth/sign-out", None, (204,) * 7),
    Row("GET", PATIENT + "/export", "A", (401, 200, 403, 403, 403, 200, 403)),
    Row("DELETE", PATIENT, "stranger", ADMIN_204, lambda c: {"json": {}}),
    Row(
        "GET",
        APPT + "/invite.ics",
        "appt",
        (401, 200, 403, 200, 403, 200, 200),
        check=lambda b, who, c: "METHOD:REQUEST" in b,
    ),
    Row("GET", "/feeds/{secret}.ics", "feed", OPEN, check=lambda b, who, c: "VEVENT" in b),
    Row("POST", PATIENT + "/calendar-feed", "A", (401, 200, 403, 403, 403, 200, 403)),
    Row("DELETE", PATIENT + "/calendar-feed", "A", (401, 204, 403, 403, 403, 204, 403)),
    Row(
        "POST",
        DOCTOR + "/calendar-feed",
        "X",
        (401, 403, 403, 200, 403, 200, 403),
        lambda c: {"json": {"names": False}},
        lambda b, who, c: b["webcal"].startswith("webcal://"),
    ),
    Row("DELETE", DOCTOR + "/calendar-feed", "X", (401, 403, 403, 204, 403, 204, 403)),
    # A manage link is the key, whoever holds it: the same answer for every caller.
    Row("GET", MANAGE, "link", OPEN, check=lambda b, who, c: b["id"] == c.appointment),
    Row(
        "GET",
        MANAGE + "/slots",
        "link",
        OPEN,
        lambda c: {"params": {"date": slot(10).date().isoformat()}},
        lambda b, who, c: iso(slot(10)) not in b["slots"],
    ),
    Row(
        "POST",
        MANAGE + "/cancel",
        "fresh_link",
        OPEN,
        lambda c: {"json": {}},
        lambda b, who, c: b["status"] == "cancelled",
    ),
    Row(
        "POST",
        MANAGE + "/reschedule",
        "fresh_link",
        OPEN,
        lambda c: {"json": {"start": iso(next(c.slots))}},
        lambda b, who, c: b["status"] == "scheduled" and b["rescheduled_from_id"] is not None,
    ),
    # Anyone: the same answer whether or not the address has an account.
    Row(
        "POST",
        "/password-reset",
        None,
        (202,) * 7,
        lambda c: {"json": {"email": "nobody@example.org", "role": "patient"}},
        lambda b, who, c: bool(b["detail"]),
    ),
    Row(
        "POST",
        "/password-reset/confirm",
        None,
        (410,) * 7,  # a link is what lets one in, not who calls: this one is no link
        lambda c: {"json": {"token": "not.a.link", "password": "long enough, surely"}},
    ),
    Row("POST", "/verify", None, (204,) * 7, lambda c: {"json": {"token": _verify_link(c)}}),
    Row("POST", "/patients/me/verify-email", None, (401, 202, 202, 403, 403, 403, 403)),
    # Last, in this order: each ends every session of its callers, whose later calls are 401.
    Row("POST", "/patients/me/sign-out", None, (401, 204, 204, 403, 403, 403, 403)),
    Row("POST", "/doctors/me/sign-out", None, (401, 401, 401, 204, 204, 403, 403)),
    Row("POST", "/admins/me/sign-out", None, (401, 401, 401, 401, 401, 204, 403)),
    Row("POST", "/staff/me/sign-out", None, (401, 401, 401, 401, 401, 401, 204)),
]
CASES = [(row, who, status) for row in MATRIX for who, status in zip(WHO, row.expect, strict=True)]
REFUSED = {401: "unauthenticated", 403: "forbidden"}


def _setup(world: World) -> Ctx:
    a, b, x, y = world.patient(), world.patient(), world.doctor(), world.doctor()
    actors = {"A": a, "B": b, "X": x, "Y": y, "admin": world.admin(), "staff": world.staff()}
    world.allow_repeat_bookings(x)
    appointment = int(world.book(a, x, slot(10))["id"])
    days = (*range(14, 84, 7), *range(16, 86, 7))  # two weekdays a week, past slot(10)'s
    free = iter(dict.fromkeys(slot(hour, d) for d in days for hour in range(9, 17)))
    bystander = world.doctor()
    world.allow_repeat_bookings(bystander)  # A books with them, then holds with them again
    return Ctx(world, actors, appointment, bystander, free, count(1))


def _call(c: Ctx, row: Row, who: str) -> Any:
    if row.target == "hold":
        path = row.path.replace("{hold_id:str}", c.hold())
    elif row.target in ("link", "fresh_link"):
        path = row.path.replace("{token:str}", c.link(row.target))
    elif row.target == "feed":
        path = c.feed()
    elif row.target is None or "{id:int}" not in row.path:
        path = row.path
    else:
        path = row.path.replace("{id:int}", str(c.id(row.target)))
    extra = row.send(c) if row.send else {}
    if row.path.startswith("/auth/"):
        c.world.client.cookies.clear()  # who calls is the cookie's sign-in there: none here
    return c.world.client.request(row.method, path, headers=c.headers(who), **extra)


def test_every_route_is_in_the_matrix() -> None:
    assert {(r.method, r.path) for r in MATRIX} == {(e.method, e.path) for e in ENDPOINTS}


def test_access_matrix(world: World) -> None:
    c = _setup(world)
    failures = []
    for row, who, want in sorted(CASES, key=lambda case: case[0].method != "GET"):
        answer = _call(c, row, who)
        case = f"{row.method} {row.path} [{row.target}] as {who}"
        calendar = answer.headers.get("content-type", "").startswith("text/calendar")
        body = answer.text if calendar else answer.json() if answer.content else None
        if answer.status_code != want:
            failures.append(f"{case}: got {answer.status_code}, want {want}: {answer.text}")
        elif want in REFUSED and body["error"] != REFUSED[want]:
            failures.append(f"{case}: error {body['error']!r}, want {REFUSED[want]!r}")
        elif want not in (*REFUSED, 422) and row.check and not row.check(body, who, c):
            failures.append(f"{case}: body check failed: {answer.text}")
    assert not failures, f"{len(failures)} of {len(CASES)} cases:\n" + "\n".join(failures)


def test_listings_do_not_leak(world: World) -> None:
    c = _setup(world)
    x = c.actors["X"].id

    def get(path: str, who: str) -> Any:
        answer = world.client.get(path, headers=c.headers(who))
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert c.appointment in _ids(get(f"/appointments/doctor/{x}", "admin"))
    doctors = get("/doctors/", "anon")
    assert len(doctors) == 3
    assert all(not {"email", "phone", "date_of_birth"} & d.keys() for d in doctors)
    assert "email" not in get(f"/doctors/{x}", "Y")
    assert _ids(get("/patients/", "Y")) == []


# The named rules the services apply (hub/access.py), for the same six callers: patients A
# (id 1) and B (2), doctors X (1) and Y (2), an admin, and nobody. An appointment of A with X.
CALLERS = {
    "anon": None,
    "A": Principal(Role.patient, 1),
    "B": Principal(Role.patient, 2),
    "X": Principal(Role.doctor, 1),
    "Y": Principal(Role.doctor, 2),
    "admin": Principal(Role.admin, 1),
    "staff": Principal(Role.staff, 1),
}
RULES: dict[str, tuple[Callable[[Principal | None], bool], set[str]]] = {
    "is_admin": (access.is_admin, {"admin"}),
    "manages_patient A": (lambda c: access.manages_patient(c, 1), {"A", "admin"}),
    "manages_doctor X": (lambda c: access.manages_doctor(c, 1), {"X", "admin"}),
    "party_to A with X": (
        lambda c: access.party_to(c, doctor_id=1, patient_id=1),
        {"A", "X", "admin", "staff"},
    ),
    "is_doctor": (access.is_doctor, {"X", "Y"}),
    "is_staff": (access.is_staff, {"staff"}),
    "sees_clinic_day": (access.sees_clinic_day, {"admin", "staff"}),
    "books_for A with X": (
        lambda c: access.books_for(c, patient_id=1, doctor_id=1),
        {"A", "X", "staff"},
    ),
}


def test_each_access_rule_allows_exactly_its_callers() -> None:
    wrong = {
        name: {who for who, caller in CALLERS.items() if rule(caller)} ^ allowed
        for name, (rule, allowed) in RULES.items()
    }
    assert {name: who for name, who in wrong.items() if who} == {}
