"""Calendar files (RFC 5545) built with the icalendar library: the invite attached to a
message about one appointment, and a person's calendar feed.

An appointment and everything it is moved to are one event to a calendar app: one `UID`
(of the first appointment of the series), a `SEQUENCE` that rises with each move, and
`METHOD:CANCEL` with `STATUS:CANCELLED` once it is cancelled. Times are written in UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from icalendar import Calendar, Event, vCalAddress, vText

PRODID = "-//hub//clinic appointments//EN"
Method = Literal["REQUEST", "CANCEL", "PUBLISH"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One appointment as a calendar shows it."""

    uid: str
    sequence: int
    start: datetime
    end: datetime
    summary: str
    location: str | None = None
    description: str | None = None
    cancelled: bool = False
    organizer: str | None = None  # email
    attendee: str | None = None  # email
    stamp: datetime | None = None


def uid_of(series_id: int, host: str) -> str:
    """The UID of an appointment series: its first appointment's id, and the hub's host."""
    return f"appointment-{series_id}@{host or 'hub'}"


def _event(entry: Entry) -> Event:
    event = Event()
    event.add("uid", entry.uid)
    event.add("sequence", entry.sequence)
    event.add("dtstamp", entry.stamp or entry.start)
    event.add("dtstart", entry.start)
    event.add("dtend", entry.end)
    event.add("summary", entry.summary)
    if entry.location:
        event.add("location", entry.location)
    if entry.description:
        event.add("description", entry.description)
    event.add("status", "CANCELLED" if entry.cancelled else "CONFIRMED")
    if entry.organizer:
        organizer = vCalAddress(f"mailto:{entry.organizer}")
        organizer.params["cn"] = vText("Clinic")
        event["organizer"] = organizer
    if entry.attendee:
        attendee = vCalAddress(f"mailto:{entry.attendee}")
        attendee.params["role"] = vText("REQ-PARTICIPANT")
        attendee.params["partstat"] = vText("ACCEPTED")
        event.add("attendee", attendee, encode=False)
    return event


def calendar(entries: Sequence[Entry], method: Method, name: str | None = None) -> bytes:
    """A VCALENDAR of `entries` with `method` (REQUEST or CANCEL for an invite, PUBLISH for
    a feed), as bytes."""
    return written(built(entries, method, name))


def built(entries: Sequence[Entry], method: Method, name: str | None = None) -> Calendar:
    """The VCALENDAR of `calendar`, as icalendar's component."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    if name:
        cal.add("x-wr-calname", name)
    for entry in entries:
        cal.add_component(_event(entry))
    return cal


# RFC 5545 folds a content line longer than 75 octets; icalendar's `to_ical` runs its folding
# over every line a character at a time (more than half of an invite's CPU), and a line under
# this length comes out of it as it went in.
FOLD_AT = 75


def written(cal: Calendar) -> bytes:
    """The bytes `cal.to_ical()` writes, with the lines that need no folding not folded."""
    lines = []
    for line in cal.content_lines():
        if line:
            raw = line.encode()
            lines.append(raw if len(raw) < FOLD_AT else line.to_ical())
    lines.append(b"")
    return b"\r\n".join(lines)


def invite(entry: Entry) -> tuple[Method, bytes]:
    """The invite of one appointment: REQUEST, or CANCEL once it is cancelled."""
    method: Method = "CANCEL" if entry.cancelled else "REQUEST"
    return method, calendar([entry], method)
