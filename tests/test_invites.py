from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from hub import invites

START = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
# Text a calendar escapes or folds: commas, semicolons, backslashes, new lines, letters of
# two to four octets (a fold must not split one), long runs.
TEXT = st.text(
    st.sampled_from(["a", " ", ",", ";", "\\", "\n", "é", "ü", "€", "日", "🙂", "^"]),
    max_size=200,
)


def _entry(summary: str, location: str | None, description: str | None, n: int) -> invites.Entry:
    return invites.Entry(
        uid=f"appointment-{n}@clinic.example",
        sequence=n % 3,
        start=START + timedelta(days=n),
        end=START + timedelta(days=n, minutes=30),
        summary=summary,
        location=location,
        description=description,
        cancelled=n % 2 == 1,
        organizer="front.desk@clinic.example",
        attendee=f"patient-{n}@example.org",
        stamp=START,
    )


@settings(max_examples=300, deadline=None)
@given(
    summary=TEXT,
    location=st.none() | TEXT,
    description=st.none() | TEXT,
    name=st.none() | TEXT.filter(lambda t: t and "\n" not in t),  # the clinic's name, one line
    count=st.integers(1, 3),
)
# Lines of 74, 75 and 76 octets ("SUMMARY:" is 8): the last unfolded, the first folded; and a
# three-octet letter across the 75th octet.
@example(summary="a" * 66, location=None, description=None, name=None, count=1)
@example(summary="a" * 67, location=None, description=None, name=None, count=1)
@example(summary="a" * 68, location=None, description=None, name=None, count=1)
@example(summary="a" * 65 + "€", location=None, description=None, name=None, count=1)
def test_a_calendar_is_written_as_icalendar_writes_it(
    summary: str, location: str | None, description: str | None, name: str | None, count: int
) -> None:
    entries = [_entry(summary, location, description, n) for n in range(count)]
    for method in ("REQUEST", "CANCEL", "PUBLISH"):
        expected = invites.built(entries, method, name).to_ical()
        assert invites.calendar(entries, method, name) == expected
    # Every line within 75 octets, as RFC 5545 asks (icalendar's folding, kept).
    ics = invites.calendar(entries, "PUBLISH", name)
    assert all(len(line) <= 75 for line in ics.split(b"\r\n"))
