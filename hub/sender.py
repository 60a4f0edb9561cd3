"""The sender every process runs: it claims the notifications that are due (hub.notices),
reads each one's appointment and recipient again, drops what no longer applies, writes the
message (hub.letters) and hands it to a transport (hub.mail); a failure is retried with
back-off. Whoever claims a row sends it; no row is claimed by two processes at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import appointments, feeds, letters, links, notices, schedules
from hub.clock import Clock, utcnow
from hub.config import Settings
from hub.db import SessionFactory
from hub.mail import Files, Message, Outcome, SmtpMail, Transport
from hub.models import (
    Admin,
    Appointment,
    Delivery,
    Doctor,
    Notice,
    Notification,
    OfferState,
    Patient,
    Schedule,
    Staff,
    Status,
    VisitType,
    WaitlistOffer,
)
from hub.notices import Claims

log = logging.getLogger("hub.sender")
Account = Patient | Doctor | Staff | Admin
ALWAYS = (Notice.verify, Notice.reset, Notice.cancelled)  # not turned off by preferences
IDLE = 10.0  # seconds between an idle sender's looks


class Dropped(Exception):
    """The notification no longer applies; the reason is recorded."""


def transports(settings: Settings) -> tuple[Transport, Transport | None]:
    """Email (SMTP, or .eml files under <data dir>/mail), and text messages (files under
    HUB_SMS_DIR, when set)."""
    mail: Transport = (
        SmtpMail(settings.smtp_url) if settings.smtp_url else Files(settings.data_dir / "mail")
    )
    return mail, Files(settings.sms_dir) if settings.sms_dir else None


class Sender:
    def __init__(
        self,
        sessions: SessionFactory,
        settings: Settings,
        mail: Transport,
        sms: Transport | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._links = links.Links(settings)
        self._mail = mail
        self._sms = sms
        self._clock = clock
        self.claims = Claims(sessions, clock)
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """A transaction of this process wrote notifications: look at once (after `every`)."""
        self._woken.set()

    async def run(self, stop: asyncio.Event, every: float = 1.0) -> None:
        """Until `stop`: send what is due; again at once after a full round, and otherwise
        when this process writes notifications (`wake`), when the earliest unclaimed one falls
        due, or after IDLE seconds, whichever comes first, but never sooner than `every`
        after the round before: a busy hour's rounds carry dozens of letters rather than one
        or two each (a round's claim, reads and record cost the same for one as for fifty).
        Another process's notifications are its sender's; IDLE is the net under a process
        that died. An idle process asks the database twice every IDLE seconds."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            began = loop.time()
            self._woken.clear()
            pause = IDLE
            try:
                if await self.send_due() >= notices.BATCH:
                    continue
                due = await self.claims.next_due()
                if due is not None:
                    pause = min(IDLE, max(0.0, (due - self._clock()).total_seconds()))
            except Exception as exc:  # the database away: the next round tries again
                log.warning("notifications not sent yet: %r", exc)
                pause = every
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), max(pause, every))
            rest = began + every - loop.time()
            if rest > 0 and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), rest)

    async def send_due(self) -> int:
        """One round: claim what is due and send or drop each; how many were handled. The
        round's facts are read in one session (the rows' accounts and appointments in a few
        queries for them all), its messages handed to each transport at once, and what
        became of the rows is recorded in one transaction at the end of the round, also when
        it is cut short."""
        claimed = await self.claims.claim()
        outcomes: list[notices.Outcome] = []
        failed: list[tuple[Notification, str]] = []  # tried again later, with back-off
        try:
            known: list[tuple[Notification, letters.Facts, str | None]] = []
            async with self._sessions() as session:
                kept = await _read_ahead(session, claimed)
                for row in claimed:
                    try:
                        known.append((row, *await self._facts_now(session, row)))
                    except Dropped as why:
                        outcomes.append((row, Delivery.dropped, str(why)))
                del kept
            # Written and sent once the session is closed: no connection waits on a mail server.
            texts = [item for item in known if item[0].channel == "sms"]
            emails = [item for item in known if item[0].channel != "sms"]
            for transport, batch in ((self._mail, emails), (self._sms, texts)):
                if not batch:
                    continue
                if transport is None:
                    outcomes += [(row, Delivery.dropped, "no transport") for row, *_ in batch]
                    continue
                await _deliver(transport, batch, outcomes, failed)
        finally:
            # What was sent is recorded first, also when the round is cut short (the process
            # stopping): a row left claimed is sent again by whoever claims it a minute later.
            await self.claims.finish(outcomes)
            for row, failure in failed:
                log.warning(
                    "notification %d not delivered (attempt %d): %s",
                    row.id,
                    row.attempts + 1,
                    failure,
                )
                await self.claims.retry(row, failure)
        return len(claimed)

    async def _facts_now(
        self, session: AsyncSession, row: Notification
    ) -> tuple[letters.Facts, str | None]:
        # The facts as they are now, and the phone a text goes to (None for an email): what
        # no longer applies is Dropped.
        account = await _account(session, row.role, row.account_id)
        if account is None or not account.active:
            raise Dropped("the account is gone or inactive")
        prefs = getattr(account, "notify", None) or {}
        if row.kind not in ALWAYS and prefs.get(row.kind.value) is False:
            raise Dropped(f"{row.kind.value} turned off")
        phone: str | None = None
        if row.channel == "sms":
            phone = getattr(account, "phone", None)
            if not phone:
                raise Dropped("no phone number")
        return await self._facts(session, row, account), phone

    async def _facts(
        self, session: AsyncSession, row: Notification, account: Account
    ) -> letters.Facts:
        settings, payload = self._settings, row.payload
        base = letters.Facts(
            kind=row.kind,
            notification_id=row.id,
            clinic=settings.clinic_name,
            sender=settings.mail_from,
            to=account.email,
            name=getattr(account, "first_name", ""),
            zone=ZoneInfo("UTC"),
            app_url=self._links.base,
        )
        if row.kind in (Notice.verify, Notice.reset):
            token = str(payload.get("token", ""))
            purpose: links.Purpose = "verify" if row.kind is Notice.verify else "reset"
            return replace(base, link=self._links.url(purpose, token))
        if row.kind is Notice.offer:
            offer = await session.get(WaitlistOffer, int(str(payload.get("offer_id", 0))))
            if offer is None or offer.state is not OfferState.open:
                raise Dropped("the offer ended")
            doctor = await session.get(Doctor, offer.doctor_id)
            hours = schedules.availability_of(await schedules.load_row(session, offer.doctor_id))
            visit = (
                None
                if offer.visit_type_id is None
                else await session.get(VisitType, offer.visit_type_id)
            )
            length = hours.slot if visit is None else timedelta(minutes=visit.minutes)
            return replace(
                base,
                zone=notices.zone_of(getattr(account, "timezone", None), hours.zone),
                doctor=_doctor(doctor),
                start=offer.start_at,
                end=offer.start_at + length,
                expires_at=offer.expires_at,
            )
        appointment = (
            None
            if row.appointment_id is None
            else await session.get(
                Appointment, row.appointment_id, options=list(appointments.PARTIES)
            )
        )
        if appointment is None:
            raise Dropped("the appointment is gone")
        live = appointment.status is Status.scheduled
        if row.kind in (Notice.booked, Notice.rescheduled) and not live:
            raise Dropped("cancelled since")
        if row.kind is Notice.reminder and (not live or appointment.start_at != row.start_at):
            raise Dropped("cancelled or moved since")
        schedule = await schedules.load_row(session, appointment.doctor_id)
        hours = schedules.availability_of(schedule)
        doctor = appointment.doctor
        entry = await feeds.appointment_entry(
            session,
            feeds.host_of(settings),
            appointment,
            f"Appointment with {_doctor(doctor)}",
            organizer=_address(settings.mail_from),
            attendee=account.email,
        )
        manage = None
        if live:
            token = self._links.sign(
                "manage",
                f"appointment:{appointment.id}",
                links.manage_print(appointment.status.value, appointment.updated_at),
            )
            manage = self._links.url("manage", token)
        return replace(
            base,
            zone=notices.zone_of(getattr(account, "timezone", None), hours.zone),
            doctor=_doctor(doctor),
            address=doctor.address,
            start=appointment.start_at,
            end=appointment.end_at,
            policy=schedules.policy_of(schedule),
            manage_url=manage,
            entry=entry,
            by=str(payload["by"]) if payload.get("by") else None,
            reason=str(payload["reason"]) if payload.get("reason") else None,
        )


ACCOUNTS: dict[str, type[Account]] = {
    "patient": Patient,
    "doctor": Doctor,
    "staff": Staff,
    "admin": Admin,
}


async def _account(session: AsyncSession, role: str, account_id: int) -> Account | None:
    model = ACCOUNTS.get(role)
    return None if model is None else await session.get(model, account_id)


async def _read_ahead(session: AsyncSession, rows: Sequence[Notification]) -> list[object]:
    # The round's accounts, appointments (with their parties) and the doctors' schedules,
    # a query per kind for them all, into the session's identity map, where each row's reads
    # find them. The identity map holds what it loaded weakly: the caller keeps the list.
    loaded: list[object] = []
    for role, model in ACCOUNTS.items():
        ids = {row.account_id for row in rows if row.role == role}
        if ids:
            loaded += (await session.scalars(select(model).where(model.id.in_(ids)))).all()
    appointment_ids = {row.appointment_id for row in rows if row.appointment_id is not None}
    if appointment_ids:
        booked = (
            await session.scalars(
                select(Appointment)
                .where(Appointment.id.in_(appointment_ids))
                .options(*appointments.PARTIES)
            )
        ).all()
        doctors = {a.doctor_id for a in booked}
        loaded += booked
        loaded += (
            await session.scalars(select(Schedule).where(Schedule.doctor_id.in_(doctors)))
        ).all()
    return loaded


async def _deliver(
    transport: Transport,
    batch: Sequence[tuple[Notification, letters.Facts, str | None]],
    outcomes: list[notices.Outcome],
    failed: list[tuple[Notification, str]],
) -> None:
    """A round's messages of one transport, written and handed over at once; each row's
    outcome goes to `outcomes` (sent) or `failed`, as far as the transport got."""
    rows: list[Notification] = []
    messages: list[Message] = []
    for row, facts, phone in batch:
        try:
            messages.append(_written(facts, phone))
        except Exception as exc:  # a letter that cannot be written: later, then failed
            log.exception("notification %d could not be written", row.id)
            failed.append((row, _failure(exc)))
            continue
        rows.append(row)
    done: list[Outcome] = []
    try:
        await transport.send(messages, done)
    except Exception as exc:  # a transport that raised: the rest of its round later
        done += [exc] * (len(messages) - len(done))
    finally:
        for row, result in zip(rows, done, strict=False):  # as far as it got
            if result is None:
                outcomes.append((row, Delivery.sent, None))
            else:
                failed.append((row, _failure(result)))


def _written(facts: letters.Facts, phone: str | None) -> Message:
    return letters.compose(facts) if phone is None else letters.short(facts, phone)


def _failure(exc: Exception) -> str:
    # What went wrong, without what the error may quote (an SMTP refusal names the address).
    code = getattr(exc, "code", None)
    return f"{exc.__class__.__name__}{f' {code}' if isinstance(code, int) else ''}"


def _doctor(doctor: Doctor | None) -> str:
    return "your doctor" if doctor is None else f"Dr {doctor.first_name} {doctor.last_name}"


def _address(sender: str) -> str:
    return sender.rsplit("<", 1)[-1].rstrip(">").strip()
