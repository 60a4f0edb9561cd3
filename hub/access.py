"""Who may read or change what: the hub's access rules, each a named predicate.

Services ask these and raise `Forbidden` themselves; `tests/test_access.py` walks every route
and command for every kind of caller and pins what these rules allow.

    admin                     everything
    staff (the front desk)    finds patients and sees what scheduling needs of them (name,
                              date of birth, contact); registers them; books, moves and
                              cancels for any patient; reads every doctor's appointments
    patient                   their own record, appointments and holds
    doctor                    their own record, hours and appointments; once approved,
                              read-only, the record of a patient who has an appointment (not
                              cancelled) with them
    anyone                    specializations, doctors' public profiles, offered slots
"""

from __future__ import annotations

from hub.auth import Principal, Role
from hub.errors import Forbidden


def is_admin(caller: Principal | None) -> bool:
    """An admin: may read and change everything."""
    return caller is not None and caller.role is Role.admin


def manages_patient(caller: Principal | None, patient_id: int) -> bool:
    """The patient themselves or an admin: may read and change the patient's record and read
    their appointments."""
    return is_admin(caller) or (caller is not None and caller.is_(Role.patient, patient_id))


def manages_doctor(caller: Principal | None, doctor_id: int) -> bool:
    """The doctor themselves or an admin: may change the doctor's record and hours, read the
    doctor's full profile, and list the doctor's appointments."""
    return is_admin(caller) or (caller is not None and caller.is_(Role.doctor, doctor_id))


def party_to(caller: Principal | None, *, doctor_id: int, patient_id: int) -> bool:
    """An appointment's patient, its doctor, the front desk, or an admin: may read it and its
    history, see who booked its slot, cancel and reschedule it (the patient within the
    doctor's cutoff)."""
    return (
        manages_patient(caller, patient_id) or manages_doctor(caller, doctor_id) or is_staff(caller)
    )


def is_staff(caller: Principal | None) -> bool:
    """The front desk: schedules for every patient and doctor."""
    return caller is not None and caller.role is Role.staff


def sees_clinic_day(caller: Principal | None) -> bool:
    """The front desk and admins: every doctor's appointments of a day, with each patient's
    name and phone."""
    return is_staff(caller) or is_admin(caller)


def books_for(caller: Principal | None, *, patient_id: int, doctor_id: int) -> bool:
    """Who may book for a patient: the patient themselves, the front desk, and a doctor in
    their own calendar."""
    return (
        (caller is not None and caller.is_(Role.patient, patient_id))
        or is_staff(caller)
        or (caller is not None and caller.is_(Role.doctor, doctor_id))
    )


def is_doctor(caller: Principal | None) -> bool:
    """Any doctor an admin approved: may read the record of a patient they have an appointment
    with (not cancelled)."""
    return caller is not None and caller.role is Role.doctor and caller.approved


def has_feed(caller: Principal) -> bool:
    """Patients and doctors get their appointments' events pushed; admins and staff have no
    feed (they watch doctors' calendars)."""
    return caller.role in (Role.patient, Role.doctor)


def ensure(allowed: bool, refusal: str) -> None:
    """Raise Forbidden with `refusal` unless the rule allowed it."""
    if not allowed:
        raise Forbidden(refusal)
