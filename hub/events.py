from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.bus import Bus
from hub.models import Appointment


def utc_text(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def slot_channel(doctor_id: int) -> str:
    return f"doctor:{doctor_id}:slots"


def feed_channels(row: Appointment) -> tuple[str, str]:
    return f"doctor:{row.doctor_id}:appointments", f"patient:{row.patient_id}:appointments"


async def slot_changed(bus: Bus, doctor_id: int, start: datetime, state: str) -> None:
    """Tell every viewer of a doctor that one slot is now free, held or booked (no identity)."""
    message = {"type": "slot", "doctor_id": doctor_id, "start": utc_text(start), "state": state}
    await bus.publish(slot_channel(doctor_id), message)


async def appointment_changed(bus: Bus, row: Appointment, event: str, **extra: Any) -> None:
    """Tell the appointment's doctor and patient what happened to it (after commit)."""
    message = {
        "type": "appointment",
        "event": event,
        "appointment_id": row.id,
        "doctor_id": row.doctor_id,
        "patient_id": row.patient_id,
        "patient_name": f"{row.patient.first_name} {row.patient.last_name}",
        "start": utc_text(row.start_at),
        "status": row.status.value,
        **extra,
    }
    for channel in feed_channels(row):
        await bus.publish(channel, message)
