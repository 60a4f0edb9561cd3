"""What the messages say: plain text and HTML, the clinic's name, the doctor, the time in the
reader's own zone with the zone named, the cancellation policy in words, and the links that
manage the appointment; a calendar invite attached. Never a reason for the visit or any other
clinical text. Pure: the sender gathers the facts (`Facts`) and sends what comes out."""

from __future__ import annotations

import functools
import html
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.charset import BASE64, QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import Compat32
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from zoneinfo import ZoneInfo

from hub import invites
from hub.mail import Text
from hub.models import Notice
from hub.schedules import Policy

DASH = "\N{EN DASH}"
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


UTF8 = Charset("utf-8")
UTF8.body_encoding = QP  # readable in the raw message, as EmailMessage writes it
SUBJECT = Charset("utf-8")
# A subject outside ASCII (every one: its " · ") in base64 words, not the shorter of base64
# and quoted-printable: measuring both was a seventh of a letter's CPU.
SUBJECT.header_encoding = BASE64


class _Policy(Compat32):
    """compat32 as the letters use it, but a header that is ASCII and fits its line is written
    as it is: what compat32's folding writes for it (`tests/test_notices.py` compares the two),
    without a `Header` built and split for it (a quarter of a letter's CPU). The letters are
    flattened with it, to files and to SMTP alike (`hub.mail`)."""

    def fold(self, name: str, value: str) -> str:
        if _fits(name, value, self.max_line_length):
            return f"{name}: {value}{self.linesep}"
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if _fits(name, value, self.max_line_length):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        if isinstance(value, str):  # a subject in encoded words: one day's letters share it
            return _folded(self.linesep, self.max_line_length, self.cte_type, name, value)
        return super().fold_binary(name, value)


@functools.lru_cache(maxsize=4096)
def _folded(linesep: str, limit: int | None, cte: str, name: str, value: str) -> bytes:
    # compat32's folding is a pure function of the header and these three settings.
    return Compat32(linesep=linesep, max_line_length=limit, cte_type=cte).fold_binary(name, value)


def _fits(name: str, value: object, limit: int | None) -> bool:
    # Printable: compat32 breaks lines at more than CR and LF (\v, \f, \x1c-\x1e), and a tab
    # is left to it too.
    return (
        isinstance(value, str)
        and value.isascii()
        and value.isprintable()
        and limit is not None
        and len(name) + len(value) + 2 <= limit
    )


POLICY = _Policy()


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything one message needs, read when it is sent."""

    kind: Notice
    notification_id: int
    clinic: str
    sender: str  # the From address
    to: str  # the reader's email address
    name: str  # the reader's first name
    zone: ZoneInfo  # the reader's zone
    app_url: str  # the browser app
    doctor: str | None = None  # "Dr Ada Lovelace, Cardiology"
    address: str | None = None  # where the visit is
    start: datetime | None = None
    end: datetime | None = None
    policy: Policy | None = None
    manage_url: str | None = None
    entry: invites.Entry | None = None  # the invite to attach
    by: str | None = None  # who cancelled
    reason: str | None = None  # why, as they said it to the patient
    link: str | None = None  # a verify or reset link
    expires_at: datetime | None = None  # an offer's end


def when(moment: datetime, zone: ZoneInfo) -> str:
    """'Tuesday 8 December 2026, 10:00' in `zone`."""
    local = moment.astimezone(zone)
    return (
        f"{DAYS[local.weekday()]} {local.day} {MONTHS[local.month - 1]} {local.year}, {local:%H:%M}"
    )


def span(facts: Facts) -> str:
    """The visit's time in the reader's zone, with the zone named."""
    assert facts.start is not None and facts.end is not None
    end = facts.end.astimezone(facts.zone)
    return f"{when(facts.start, facts.zone)}{DASH}{end:%H:%M} ({facts.zone.key})"


def policy_words(facts: Facts) -> str:
    """The cancellation rule, in words, for this visit."""
    policy, start = facts.policy, facts.start
    if policy is None or start is None:
        return ""
    if not policy.cancel_cutoff_minutes:
        return "You can cancel free of charge until the visit starts."
    until = start - timedelta(minutes=policy.cancel_cutoff_minutes)
    later = (
        "After that you can still cancel, but it is recorded as a late cancellation."
        if policy.allow_late_cancel
        else "After that it cannot be cancelled online: please call the clinic."
    )
    return f"You can cancel free of charge until {when(until, facts.zone)}. {later}"


def _who(by: str | None) -> str:
    return {"doctor": "your doctor", "staff": "the clinic", "admin": "the clinic"}.get(
        by or "", "you"
    )


def _lines(facts: Facts) -> tuple[str, list[str], list[tuple[str, str]]]:
    """The subject, the paragraphs, and the links (label, url) of a message."""
    kind = facts.kind
    if kind is Notice.verify:
        return (
            "Please confirm your email address",
            ["Please confirm that this is your email address by opening the link below."],
            [("Confirm my email address", facts.link or "")],
        )
    if kind is Notice.reset:
        return (
            "Reset your password",
            [
                "Someone asked to reset the password of your account. If it was you, open the "
                "link below within an hour. If not, ignore this message: nothing changes.",
            ],
            [("Choose a new password", facts.link or "")],
        )
    assert facts.start is not None
    day = when(facts.start, facts.zone)
    visit = f"{span(facts)} with {facts.doctor}"
    place = [f"Where: {facts.address}"] if facts.address else []
    manage = [("Cancel or reschedule this appointment", facts.manage_url or "")]
    if kind is Notice.offer:
        assert facts.expires_at is not None
        return (
            "A time has freed up for you",
            [
                f"A time you were waiting for has freed up: {visit}.",
                f"It is held for you until {when(facts.expires_at, facts.zone)}. "
                "Accept it or let it go on your appointments page.",
            ],
            [("Accept or decline", f"{facts.app_url}/#/mine")],
        )
    if kind is Notice.cancelled:
        said = [f"The reason given: {facts.reason}"] if facts.reason else []
        return (
            "Your appointment is cancelled",
            [f"Your appointment on {visit} was cancelled by {_who(facts.by)}.", *said],
            [("Book another time", f"{facts.app_url}/#/book")],
        )
    subject, opening = {
        Notice.booked: (f"Your appointment on {day}", f"Your appointment is booked: {visit}."),
        Notice.rescheduled: ("Your appointment has moved", f"It is now on {visit}."),
        Notice.reminder: (f"Reminder: your appointment on {day}", f"A reminder: {visit}."),
    }[kind]
    return subject, [opening, *place, policy_words(facts)], manage if facts.manage_url else []


def compose(facts: Facts) -> Message:
    """The email: text and HTML, with the calendar invite attached where there is one."""
    subject, paragraphs, links = _lines(facts)
    greeting = f"Hello {facts.name}," if facts.name else "Hello,"
    body = [greeting, *[p for p in paragraphs if p]]
    text = "\n\n".join(body)
    text += "".join(f"\n\n{label}: {url}" for label, url in links)
    text += f"\n\n{facts.clinic}\n"
    rich = "".join(f"<p>{html.escape(p)}</p>" for p in body)
    rich += "".join(
        f'<p><a href="{html.escape(url, quote=True)}">{html.escape(label)}</a></p>'
        for label, url in links
    )
    rich = f"<!doctype html><html><body>{rich}<p>{html.escape(facts.clinic)}</p></body></html>"
    # The MIME classes of the compat32 policy: the same message as `EmailMessage` builds,
    # at a twentieth of the CPU (1.3 -> 0.06 ms; a confirmation goes out with every booking).
    body_part = MIMEMultipart("alternative", boundary=_boundary(), policy=POLICY)
    body_part.attach(_text("plain", text))
    body_part.attach(_text("html", rich))
    message: Message = body_part
    if facts.entry is not None and facts.kind in (
        Notice.booked,
        Notice.rescheduled,
        Notice.cancelled,
    ):
        method, ics = invites.invite(facts.entry)
        invite = _text("calendar", ics.decode())
        invite.set_param("method", method)
        invite.add_header("Content-Disposition", "attachment", filename="invite.ics")
        message = MIMEMultipart("mixed", boundary=_boundary(), policy=POLICY)
        message.attach(body_part)
        message.attach(invite)
    message["Subject"] = _subject(f"{subject} · {facts.clinic}")
    message["From"] = _address(facts.sender)
    message["To"] = _address(facts.to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="hub")
    message["X-Hub-Notification"] = f"{facts.notification_id}-{facts.kind.value}"
    return message


def _boundary() -> str:
    """A multipart boundary that no part can contain: every part is quoted-printable, which
    writes each "=" of its text as "=3D", so "==" occurs in none (the generator's own random
    boundary is checked against the whole text by a regular expression compiled for it: a
    tenth of a letter's CPU)."""
    return f"=={secrets.token_hex(16)}=="


def _text(subtype: str, text: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype, policy=POLICY)
    part.set_payload(text, UTF8)
    return part


# Pure, and a clinic's letters share them: every letter's From, the subject of every letter
# about one day's visits (encoding one was a third of a letter without its invite).
@functools.lru_cache(maxsize=4096)
def _subject(title: str) -> str:
    return title if title.isascii() else Header(title, SUBJECT).encode()


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> str:
    """An address header, its display name encoded where it is not ASCII (an address itself
    outside ASCII goes as given: only an SMTPUTF8 server takes it)."""
    try:
        return formataddr(parseaddr(text), charset="utf-8")
    except UnicodeError:
        return text


def short(facts: Facts, phone: str) -> Text:
    """A reminder as a text message."""
    assert facts.start is not None
    day = when(facts.start, facts.zone)
    body = f"{facts.clinic}: reminder of your appointment on {day} with {facts.doctor}."
    if facts.manage_url:
        body += f" Manage it: {facts.manage_url}"
    return Text(phone, body, f"{facts.notification_id}-sms")
