from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hub.calendar import Window
from hub.errors import InvalidInput
from hub.protocol import HoursEvent, SlotEvent

MAX_WATCHED = 20  # doctors per connection
# Events of one doctor kept back while its catch-up runs; past this they are dropped and the
# catch-up goes on from where it got to instead.
MAX_HELD_BACK = 500
DoctorEvent = SlotEvent | HoursEvent
Verdict = Literal["send", "hold", "repair", "ignore"]


@dataclass(slots=True)
class Watch:
    """One watched doctor: the window asked for, the last version sent (None while a snapshot
    or a catch-up is being built), what arrived meanwhile, and whether some of that was
    dropped."""

    window: Window
    version: int | None = None
    held: list[DoctorEvent] = field(default_factory=list)
    dropped: bool = False


class Watches:
    """The version state machine of one connection's watched doctors. Each doctor's events
    reach the client in version order: the next version is sent, a gap starts a repair, and
    what arrives during a repair is held back (bounded) and released after it."""

    def __init__(self, limit: int = MAX_WATCHED, held_limit: int = MAX_HELD_BACK) -> None:
        self._limit = limit
        self._held_limit = held_limit
        self._by_doctor: dict[int, Watch] = {}

    def __bool__(self) -> bool:
        return bool(self._by_doctor)

    def __contains__(self, doctor_id: int) -> bool:
        return doctor_id in self._by_doctor

    def doctors(self) -> list[int]:
        return list(self._by_doctor)

    def get(self, doctor_id: int) -> Watch | None:
        return self._by_doctor.get(doctor_id)

    def begin(self, doctor_id: int, window: Window) -> Watch | None:
        """Start (or restart) syncing a doctor; the watch it replaces, to restore on failure."""
        before = self._by_doctor.get(doctor_id)
        if before is None and len(self._by_doctor) >= self._limit:
            raise InvalidInput(f"at most {self._limit} doctors per connection")
        self._by_doctor[doctor_id] = Watch(window, held=[] if before is None else before.held)
        return before

    def restore(self, doctor_id: int, before: Watch | None) -> None:
        """Undo `begin`: as if the watch never happened, or back to the one it replaced."""
        if before is None:
            self._by_doctor.pop(doctor_id, None)
        else:
            self._by_doctor[doctor_id] = before

    def drop(self, doctor_id: int) -> None:
        self._by_doctor.pop(doctor_id, None)

    def arrive(self, message: DoctorEvent) -> Verdict:
        """What to do with a doctor's event: send it, hold it back, or repair a gap first."""
        watch = self._by_doctor.get(message["doctor_id"])
        if watch is None:
            return "ignore"
        version = message["version"]
        if watch.version is None:
            self._hold(watch, message)
            return "hold"
        if version <= watch.version:
            return "ignore"  # sent already (a replay overlapped the live feed)
        if version == watch.version + 1:
            watch.version = version
            return "send"
        watch.held = [message]  # pub/sub lost something: fetch what is missing, in order
        watch.dropped = False
        return "repair"

    def repairing(self, doctor_id: int) -> int:
        """Mark a doctor as catching up from the last version sent; that version."""
        watch = self._by_doctor[doctor_id]
        assert watch.version is not None
        since, watch.version = watch.version, None
        return since

    def caught_up(self, doctor_id: int, version: int) -> list[DoctorEvent] | None:
        """The client now has `version`: the held-back events that follow it, in order, or
        None when some were dropped and the catch-up must go on from `version`."""
        watch = self._by_doctor.get(doctor_id)
        if watch is None:
            return []
        if watch.dropped:
            watch.dropped = False
            return None
        follow = []
        for message in sorted(watch.held, key=lambda m: m["version"]):
            if message["version"] == version + 1:
                follow.append(message)
                version += 1
        watch.held = []
        watch.version = version
        return follow

    def _hold(self, watch: Watch, message: DoctorEvent) -> None:
        if len(watch.held) >= self._held_limit:
            watch.held = []
            watch.dropped = True
        watch.held.append(message)
