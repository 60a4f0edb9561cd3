"""Messages serialised once and sent to many: a bus event, handed to every viewer of a doctor
as one object (never changed once published), and the snapshot every viewer who sees no one's
appointment shares (`hub.calendar` gives them one view object)."""

from __future__ import annotations

import json
from collections import OrderedDict

from hub import events, protocol
from hub.calendar import CalendarView
from hub.protocol import Event, Snapshot

# Shared snapshots kept per process: a few doctors' storms at once, and at most this many
# bytes of text (31 days of 5-minute slots is about 1 MiB).
KEPT_SNAPSHOTS = 8
KEPT_BYTES = 4 * 1024 * 1024


class Frames:
    """The text of the last bus event serialised."""

    def __init__(self) -> None:
        self._message: object = None  # held, so its id cannot be reused meanwhile
        self._frame = ""

    def of(self, message: Event) -> str:
        if message is not self._message:
            self._message, self._frame = message, protocol.dump(message)
        return self._frame


class Snapshots:
    """The text of recent shared snapshots, by view object and version (a view naming
    someone is serialised for its one viewer and not kept); a client's `ref` is added to the
    shared text."""

    def __init__(self, keep: int = KEPT_SNAPSHOTS, keep_bytes: int = KEPT_BYTES) -> None:
        self._keep = keep
        self._keep_bytes = keep_bytes
        self._bytes = 0
        self._frames: OrderedDict[tuple[int, int], tuple[CalendarView, str]] = OrderedDict()

    def of(self, version: int, view: CalendarView, ref: str | None) -> str:
        key = (id(view), version)
        kept = self._frames.get(key)
        if kept is not None and kept[0] is view:
            self._frames.move_to_end(key)
            frame = kept[1]
        else:
            frame = protocol.dump(snapshot(version, view))
            if view.shared:
                self._keep_frame(key, view, frame)
        if ref is None:
            return frame
        return f'{frame[:-1]},"ref":{json.dumps(ref)}}}'

    def _keep_frame(self, key: tuple[int, int], view: CalendarView, frame: str) -> None:
        old = self._frames.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        self._frames[key] = (view, frame)  # the view held, so its id is not reused
        self._bytes += len(frame)
        while self._frames and (len(self._frames) > self._keep or self._bytes > self._keep_bytes):
            _, (_, dropped) = self._frames.popitem(last=False)
            self._bytes -= len(dropped)


def snapshot(version: int, view: CalendarView) -> Snapshot:
    """A calendar view as the `snapshot` message, at `version`."""
    return {
        "type": "snapshot",
        "doctor_id": view.doctor_id,
        "version": version,
        "timezone": view.timezone,
        "slots": [
            {
                "start": events.utc_text(slot.start),
                "end": events.utc_text(slot.end),
                "state": slot.state,
                "appointment_id": slot.appointment_id,
                "patient_id": slot.patient_id,
            }
            for slot in view.slots
        ],
    }


FRAMES = Frames()
SNAPSHOTS = Snapshots()
