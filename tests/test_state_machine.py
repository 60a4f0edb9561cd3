"""Random actors hold, release, book, cancel and reschedule; a model predicts every answer,
and after every step the database equals the model and never has two live appointments for
one doctor-start or one patient-start."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import text

from hub.models import UTCDateTime
from tests.conftest import Actor, World, iso, slot

SLOTS = [slot(hour, days) for days in (8, 9) for hour in (9, 10)]
PATIENTS = 3


@dataclass
class Booked:
    doctor: int
    patient: int
    start: datetime
    status: str = "scheduled"


@dataclass
class Model:
    appointments: dict[int, Booked] = field(default_factory=dict)
    holds: dict[tuple[int, datetime], tuple[int, str]] = field(default_factory=dict)

    def live(self) -> dict[int, Booked]:
        return {i: a for i, a in self.appointments.items() if a.status == "scheduled"}

    def at(self, doctor: int, start: datetime, besides: int | None = None) -> int | None:
        for i, a in self.live().items():
            if a.doctor == doctor and a.start == start and i != besides:
                return i
        return None

    def busy(self, patient: int, start: datetime, besides: int | None = None) -> bool:
        return any(
            a.patient == patient and a.start == start and i != besides
            for i, a in self.live().items()
        )

    def has_upcoming(self, doctor: int, patient: int, besides: int | None = None) -> bool:
        return any(
            a.doctor == doctor and a.patient == patient and i != besides
            for i, a in self.live().items()
        )

    def holder(self, doctor: int, start: datetime) -> int | None:
        held = self.holds.get((doctor, start))
        return held[0] if held else None


def machine(world: World) -> type[RuleBasedStateMachine]:
    class Booking(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.patients: list[Actor] = [world.patient() for _ in range(PATIENTS)]
            strict, relaxed = world.doctor(), world.doctor()
            world.allow_repeat_bookings(relaxed)
            self.doctors = [strict, relaxed]
            self.one_per_patient = {strict.id: True, relaxed.id: False}
            self.model = Model()

        def _expect(self, answer: object, status: int, code: str | None = None) -> None:
            got = answer.status_code  # type: ignore[attr-defined]
            body = answer.json() if answer.content else {}  # type: ignore[attr-defined]
            assert got == status, f"want {status} {code}, got {got} {body}"
            if code is not None:
                assert body["error"] == code, body

        def _booking_refusal(
            self, patient: int, doctor: int, start: datetime, besides: int | None = None
        ) -> str | None:
            holder = self.model.holder(doctor, start)
            if holder is not None and holder != patient:
                return "slot_taken"
            if self.one_per_patient[doctor] and self.model.has_upcoming(doctor, patient, besides):
                return "already_booked"
            if self.model.busy(patient, start, besides):
                return "patient_busy"
            if self.model.at(doctor, start, besides) is not None:
                return "slot_taken"
            return None

        @rule(p=st.integers(0, PATIENTS - 1), d=st.integers(0, 1), s=st.sampled_from(SLOTS))
        def hold(self, p: int, d: int, s: datetime) -> None:
            patient, doctor = self.patients[p], self.doctors[d]
            body = {"doctor_id": doctor.id, "scheduled_datetime": iso(s)}
            answer = world.client.post("/appointments/holds", json=body, headers=patient.headers)
            holder = self.model.holder(doctor.id, s)
            mine = sum(1 for who, _ in self.model.holds.values() if who == patient.id)
            if self.model.at(doctor.id, s) is not None:
                self._expect(answer, 409, "slot_taken")
            elif self.one_per_patient[doctor.id] and self.model.has_upcoming(
                doctor.id, patient.id, None
            ):  # refused at the hold, not only at the confirmation
                self._expect(answer, 409, "already_booked")
            elif holder == patient.id:
                self._expect(answer, 201)
            elif mine >= 3:
                self._expect(answer, 409, "too_many_holds")
            elif holder is not None:
                self._expect(answer, 409, "slot_taken")
            else:
                self._expect(answer, 201)
                self.model.holds[(doctor.id, s)] = (patient.id, answer.json()["hold_id"])

        @precondition(lambda self: bool(self.model.holds))
        @rule(data=st.data())
        def release(self, data: st.DataObject) -> None:
            key = data.draw(st.sampled_from(sorted(self.model.holds)))
            patient_id, hold_id = self.model.holds.pop(key)
            patient = next(a for a in self.patients if a.id == patient_id)
            answer = world.client.delete(f"/appointments/holds/{hold_id}", headers=patient.headers)
            self._expect(answer, 204)

        @rule(
            p=st.integers(0, PATIENTS - 1),
            d=st.integers(0, 1),
            s=st.sampled_from(SLOTS),
            with_hold=st.booleans(),
        )
        def book(self, p: int, d: int, s: datetime, with_hold: bool) -> None:
            patient, doctor = self.patients[p], self.doctors[d]
            held = self.model.holds.get((doctor.id, s))
            if with_hold and held and held[0] == patient.id:
                body: dict[str, object] = {"hold_id": held[1]}
            else:
                body = {"doctor_id": doctor.id, "scheduled_datetime": iso(s)}
            answer = world.client.post("/appointments/", json=body, headers=patient.headers)
            refusal = self._booking_refusal(patient.id, doctor.id, s)
            if refusal is not None:
                self._expect(answer, 409, refusal)
                return
            self._expect(answer, 201)
            self.model.appointments[answer.json()["id"]] = Booked(doctor.id, patient.id, s)
            if held and held[0] == patient.id:
                del self.model.holds[(doctor.id, s)]  # booking uses up the patient's hold

        @precondition(lambda self: bool(self.model.appointments))
        @rule(data=st.data(), by=st.sampled_from(["patient", "doctor", "stranger"]))
        def cancel(self, data: st.DataObject, by: str) -> None:
            appointment_id = data.draw(st.sampled_from(sorted(self.model.appointments)))
            row = self.model.appointments[appointment_id]
            actor = self._actor(row, by)
            why = {"reason": "the clinic is closed"} if by == "doctor" else {}  # a doctor says why
            answer = world.client.put(
                f"/appointments/{appointment_id}/cancel", json=why, headers=actor.headers
            )
            if by == "stranger":
                self._expect(answer, 403, "forbidden")
            elif row.status != "scheduled":
                self._expect(answer, 409, "invalid_transition")
            else:
                self._expect(answer, 200)
                row.status = "cancelled"

        @precondition(lambda self: bool(self.model.appointments))
        @rule(data=st.data(), s=st.sampled_from(SLOTS))
        def reschedule(self, data: st.DataObject, s: datetime) -> None:
            appointment_id = data.draw(st.sampled_from(sorted(self.model.appointments)))
            row = self.model.appointments[appointment_id]
            patient = next(a for a in self.patients if a.id == row.patient)
            answer = world.client.put(
                f"/appointments/{appointment_id}/reschedule",
                json={"scheduled_datetime": iso(s)},
                headers=patient.headers,
            )
            holder = self.model.holder(row.doctor, s)
            if holder is not None and holder != row.patient:
                self._expect(answer, 409, "slot_taken")
            elif row.status != "scheduled":
                self._expect(answer, 409, "invalid_transition")
            elif refusal := self._booking_refusal(row.patient, row.doctor, s, appointment_id):
                self._expect(answer, 409, refusal)
            else:
                self._expect(answer, 200)
                row.status = "cancelled"
                new = Booked(row.doctor, row.patient, s)
                self.model.appointments[answer.json()["id"]] = new
                if holder == row.patient:
                    del self.model.holds[(row.doctor, s)]

        @precondition(lambda self: bool(self.model.appointments))
        @rule(data=st.data())
        def complete_or_no_show_before_start_is_refused(self, data: st.DataObject) -> None:
            appointment_id = data.draw(st.sampled_from(sorted(self.model.appointments)))
            row = self.model.appointments[appointment_id]
            doctor = next(a for a in self.doctors if a.id == row.doctor)
            for action in ("complete", "no-show"):
                answer = world.client.put(
                    f"/appointments/{appointment_id}/{action}", headers=doctor.headers
                )
                self._expect(answer, 409, "invalid_transition")

        def _actor(self, row: Booked, by: str) -> Actor:
            if by == "patient":
                return next(a for a in self.patients if a.id == row.patient)
            if by == "doctor":
                return next(a for a in self.doctors if a.id == row.doctor)
            return next(a for a in self.patients if a.id != row.patient)

        @invariant()
        def database_equals_model_and_never_double_books(self) -> None:
            ids = [a.id for a in self.doctors]
            with world.raw.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT id, doctor_id, patient_id, start_at, status FROM appointments "
                        "WHERE doctor_id IN (:a, :b)"
                    ).columns(start_at=UTCDateTime()),
                    {"a": ids[0], "b": ids[1]},
                ).all()
            stored = {r.id: (r.doctor_id, r.patient_id, r.start_at, r.status) for r in rows}
            expected = {
                i: (a.doctor, a.patient, a.start, a.status)
                for i, a in self.model.appointments.items()
            }
            assert stored == expected
            live = [(d, p, s) for d, p, s, status in stored.values() if status == "scheduled"]
            assert len({(d, s) for d, _, s in live}) == len(live)
            assert len({(p, s) for _, p, s in live}) == len(live)

    return Booking


def test_random_actors_keep_the_database_equal_to_the_model(world: World) -> None:
    state_machine = machine(world)
    state_machine.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=25,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    state_machine.TestCase().runTest()
