"""The waitlist: patients waiting for a time with a doctor, and the timed offers that give a
freed slot to the first in line by itself.

An entry names a doctor, local dates first..last, a visit type and optionally times of day.
Whenever one of the doctor's slots may have become free (a cancellation, a reschedule, a
released or lapsed hold, new hours, a declined or lapsed offer), `match` walks the live
entries in line order (urgent first, then by when they joined) and offers each waiting one
the earliest free slot that fits it: the slot is held in Redis for that patient for the
offer's lifetime (every other viewer sees it held) and the offer is pushed to the patient's
feed. Accepting books it through the hold; declining or letting it lapse hands it on.

Every change of a doctor's waitlist runs under that doctor's schedule lock, as bookings do,
so matchers in several processes queue instead of racing; and the UNIQUE keys on the offers
(migration 0010) refuse two open offers of one slot or of one entry whatever writes them.
Booking with the doctor, by any path, takes the patient off that doctor's list in the
booking's own transaction (`hub.ledger`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time as clock_time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub import access, events, ledger, notices, schedules, visits
from hub.auth import Principal, Role, require
from hub.availability import Slot
from hub.booking import Booking
from hub.calendar import Calendar
from hub.clock import Clock, utcnow
from hub.db import SessionFactory
from hub.errors import AlreadyWaiting, HoldsUnavailable, InvalidInput, NotFound, OfferGone
from hub.holds import Hold, HoldStore, SlotHeld
from hub.models import (
    Appointment,
    Notice,
    OfferState,
    Patient,
    Status,
    Waiting,
    WaitlistEntry,
    WaitlistOffer,
)
from hub.protocol import Event
from hub.relay import Relay

log = logging.getLogger("hub.waitlist")
MAX_DAYS = 92  # the longest range of dates one entry waits for
MAX_TIMES = 4  # times of day per entry
MAX_LIVE = 5  # live entries of one patient, over all doctors
# The matcher offers what the front desk could book: an entry's visit type was checked
# against whoever added it when it joined.
DESK = Principal(Role.staff, 0)
LAPSING = 100  # lapsed offers ended per look
FULL_MATCH = 10.0  # seconds between matches of every doctor someone waits for (a safety net)
LIVE = (Waiting.waiting, Waiting.offered)


@dataclass(frozen=True, slots=True)
class Span:
    """A time of day an entry accepts a start in, local to the doctor: start <= t < end."""

    start: time
    end: time


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a patient waits for: a doctor, local dates first..last, optionally a visit type
    and times of day; for whom (the front desk and the doctor name them), how urgently, and
    the appointment an accepted offer would move (default: their earliest upcoming one)."""

    doctor_id: int
    first_day: date
    last_day: date
    visit_type_id: int | None = None
    times: tuple[Span, ...] = ()
    urgent: bool = False
    patient_id: int | None = None
    appointment_id: int | None = None


@dataclass(frozen=True, slots=True)
class OfferView:
    id: int
    entry_id: int
    doctor_id: int
    patient_id: int
    start: datetime
    end: datetime
    expires_at: datetime
    state: OfferState


@dataclass(frozen=True, slots=True)
class EntryView:
    id: int
    doctor_id: int
    patient_id: int
    first_day: date
    last_day: date
    visit_type_id: int | None
    times: tuple[Span, ...]
    urgent: bool
    status: Waiting
    position: int | None  # 1 for the first in line; None once it left the line
    appointment_id: int | None  # the appointment an accepted offer moves
    created_at: datetime
    offer: OfferView | None  # the open offer, if one is out


def _offer_view(row: WaitlistOffer) -> OfferView:
    return OfferView(
        row.id,
        row.entry_id,
        row.doctor_id,
        row.patient_id,
        row.start_at,
        row.end_at,
        row.expires_at,
        row.state,
    )


class Times(Protocol):
    @property
    def start(self) -> time: ...

    @property
    def end(self) -> time: ...


def wait_spans(times: Sequence[Times]) -> list[Span]:
    """Times of day of a join request as spans ("24:00", read as 00:00, ends at midnight)."""
    return [Span(t.start, t.end if t.end != time(0) else time.max) for t in times]


def _spans(raw: list[list[str]] | None) -> tuple[Span, ...]:
    return tuple(Span(time.fromisoformat(a), time.fromisoformat(b)) for a, b in raw or [])


def check_request(first_day: date, last_day: date, times: Sequence[Span], today: date) -> None:
    """The dates and times of day an entry may wait for; InvalidInput naming the field."""
    if last_day < first_day:
        raise InvalidInput("the range ends before it starts", [_field("to", "before from")])
    if last_day < today - timedelta(days=1):
        raise InvalidInput("the range is over", [_field("to", "in the past")])
    if last_day - first_day > timedelta(days=MAX_DAYS):
        raise InvalidInput(
            f"wait for at most {MAX_DAYS} days at once", [_field("to", f"{MAX_DAYS} days at most")]
        )
    if len(times) > MAX_TIMES:
        raise InvalidInput(
            f"at most {MAX_TIMES} times of day", [_field("times", f"{MAX_TIMES} at most")]
        )
    for n, span in enumerate(times):
        if span.end <= span.start:
            raise InvalidInput(
                "a time of day ends after it starts", [_field(f"times.{n}", "ends first")]
            )


def _field(name: str, message: str) -> dict[str, str]:
    return {"field": name, "message": message}


def fits(entry: WaitlistEntry, start: datetime, zone: ZoneInfo) -> bool:
    """Whether a start suits an entry: on one of its dates, at one of its times of day (in
    the doctor's zone)."""
    local = start.astimezone(zone)
    if not entry.first_day <= local.date() <= entry.last_day:
        return False
    spans = _spans(entry.times)
    return not spans or any(s.start <= local.time() < s.end for s in spans)


_IN_LINE = (WaitlistEntry.urgent.desc(), WaitlistEntry.created_at, WaitlistEntry.id)


async def _live_entries(session: AsyncSession, doctor_id: int) -> list[WaitlistEntry]:
    rows = await session.scalars(
        select(WaitlistEntry)
        .where(WaitlistEntry.doctor_id == doctor_id, WaitlistEntry.live.is_not(None))
        .order_by(*_IN_LINE)
    )
    return list(rows)


class Waitlist:
    """Entries, offers and the matcher. `run` is the loop every process runs: it matches
    the doctors whose slots may have freed (`poke`, from the relay's events), ends lapsed
    offers, and now and then matches every doctor someone waits for."""

    def __init__(
        self,
        sessions: SessionFactory,
        holds: HoldStore,
        relay: Relay,
        calendar: Calendar,
        booking: Booking,
        *,
        offer_ttl: int = 900,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._holds = holds
        self._relay = relay
        self._calendar = calendar
        self._booking = booking
        self._offer = timedelta(seconds=offer_ttl)
        self._clock = clock
        self._pending: set[int] = set()
        self._poked = asyncio.Event()
        # What the loop asks the database about only when there is something to ask: the
        # earliest open offer's expiry it knows of (from its last look, and the offers this
        # process made since), and whether this process withdrew an offer whose hold is
        # still held. Another process's offers are its own loop's; every loop looks at them
        # all in its sweep every FULL_MATCH seconds, the net under a process that died.
        self._next_expiry: datetime | None = None
        self._withdrawn = False
        relay.listen(self.on_event)

    # -- entries -------------------------------------------------------------------------

    async def join(self, principal: Principal | None, wanted: Wanted) -> EntryView:
        """Put a patient on a doctor's waitlist: the patient themselves, the front desk, or
        the doctor for their own calendar (only the last two mark it urgent). If the patient
        has an upcoming appointment with the doctor (or names one), an accepted offer moves
        it. A free slot that fits is offered at once."""
        caller = require(principal, Role.patient, Role.staff, Role.doctor)
        doctor_id, first_day, last_day = wanted.doctor_id, wanted.first_day, wanted.last_day
        visit_type_id, times, urgent = wanted.visit_type_id, wanted.times, wanted.urgent
        patient_id, appointment_id = wanted.patient_id, wanted.appointment_id
        if caller.role is Role.patient:
            access.ensure(patient_id in (None, caller.id), "a patient waits only for themselves")
            access.ensure(not urgent, "only the front desk and the doctor mark a wait urgent")
            patient_id = caller.id
        elif patient_id is None:
            raise InvalidInput(
                "say which patient waits", [_field("patient_id", "required for a patient")]
            )
        access.ensure(
            access.books_for(caller, patient_id=patient_id, doctor_id=doctor_id),
            "a doctor keeps a waitlist only for their own calendar",
        )
        check_request(first_day, last_day, times, self._clock().date())
        now = self._clock()
        waiter = patient_id

        async def work(session: AsyncSession) -> int:
            await ledger.bookable_doctor(session, doctor_id)
            if await session.get(Patient, waiter) is None:
                raise NotFound(f"patient {waiter} not found")
            row = await schedules.load_row(session, doctor_id, lock=True)
            types = await visits.of_doctor(session, doctor_id, schedules.availability_of(row))
            visit = visits.pick(types, visit_type_id, caller, doctor_id)
            moving = await _moving(session, waiter, doctor_id, appointment_id, now)
            waiting_for = list(
                await session.scalars(
                    select(WaitlistEntry.doctor_id).where(
                        WaitlistEntry.patient_id == waiter, WaitlistEntry.live.is_not(None)
                    )
                )
            )
            if doctor_id in waiting_for:
                raise AlreadyWaiting("already on this doctor's waitlist")
            if len(waiting_for) >= MAX_LIVE:
                raise AlreadyWaiting(f"on {MAX_LIVE} waitlists already: leave one first")
            entry = WaitlistEntry(
                doctor_id=doctor_id,
                patient_id=waiter,
                visit_type_id=visit.id,
                first_day=first_day,
                last_day=last_day,
                times=[[s.start.isoformat("minutes"), s.end.isoformat("minutes")] for s in times]
                or None,
                urgent=urgent,
                moving_id=moving,
                by_role=caller.role.value,
                status=Waiting.waiting,
                created_at=now,
                updated_at=now,
            )
            session.add(entry)
            await session.flush()
            return entry.id

        try:
            entry_id = await self._relay.transaction(work)
        except IntegrityError as exc:  # the same patient joined twice at once
            raise AlreadyWaiting("already on this doctor's waitlist") from exc
        await self._match_quietly(doctor_id)
        return await self.get(caller, entry_id)

    async def get(self, principal: Principal | None, entry_id: int) -> EntryView:
        """One entry with its place in line and its open offer: its patient, its doctor, the
        front desk, admins."""
        caller = require(principal)
        async with self._sessions() as session:
            entry = await session.get(WaitlistEntry, entry_id)
            if entry is None or not access.party_to(
                caller, doctor_id=entry.doctor_id, patient_id=entry.patient_id
            ):
                raise NotFound(f"waitlist entry {entry_id} not found")
            return (await _views(session, [entry]))[0]

    async def entries(
        self, principal: Principal | None, doctor_id: int | None = None
    ) -> list[EntryView]:
        """The live entries the caller may see: a patient's own, a doctor's list, and for the
        front desk and admins every list (or one doctor's)."""
        caller = require(principal)
        query = select(WaitlistEntry).where(WaitlistEntry.live.is_not(None))
        if caller.role is Role.patient:
            query = query.where(WaitlistEntry.patient_id == caller.id)
        elif caller.role is Role.doctor:
            access.ensure(doctor_id in (None, caller.id), "a doctor sees only their own list")
            doctor_id = caller.id
        if doctor_id is not None:
            query = query.where(WaitlistEntry.doctor_id == doctor_id)
        async with self._sessions() as session:
            rows = list(await session.scalars(query.order_by(WaitlistEntry.doctor_id, *_IN_LINE)))
            return await _views(session, rows)

    async def leave(self, principal: Principal | None, entry_id: int) -> None:
        """Take an entry off the list (its open offer ends and is handed on)."""
        view = await self.get(principal, entry_id)
        if view.position is None:
            return  # off the list already

        async def work(session: AsyncSession) -> None:
            await events.locked_schedule(session, view.doctor_id)
            now = self._clock()
            await session.execute(
                update(WaitlistEntry)
                .where(WaitlistEntry.id == entry_id, WaitlistEntry.live.is_not(None))
                .values(status=Waiting.left, updated_at=now)
            )
            if view.offer is not None:
                await self._close(session, view.offer.id, OfferState.withdrawn, now)

        await self._relay.transaction(work)
        if view.offer is not None:
            await self._hand_on(view.doctor_id, [view.offer.id])

    # -- offers --------------------------------------------------------------------------

    async def accept(self, principal: Principal | None, offer_id: int) -> Appointment:
        """Book the offered slot (or move the entry's appointment there): the patient, or the
        front desk or the doctor for them. OfferGone once it was declined, lapsed or ended."""
        caller = require(principal)
        async with self._sessions() as session:
            offer = await session.get(WaitlistOffer, offer_id)
            entry = None if offer is None else await session.get(WaitlistEntry, offer.entry_id)
        if (
            offer is None
            or entry is None
            or not access.party_to(caller, doctor_id=offer.doctor_id, patient_id=offer.patient_id)
        ):
            raise NotFound(f"offer {offer_id} not found")
        if offer.state is not OfferState.open or offer.expires_at <= self._clock():
            raise OfferGone(f"this offer is {_ended(offer)}")
        hold_id = offer.hold_id
        if entry.moving_id is not None:
            return await self._booking.reschedule(
                caller,
                entry.moving_id,
                None if hold_id else offer.start_at,
                hold_id,
                offer.visit_type_id,
            )
        row, _ = await self._booking.book(
            caller,
            offer.doctor_id,
            offer.start_at,
            patient_id=offer.patient_id,
            hold_id=hold_id,
            visit_type_id=offer.visit_type_id,
        )
        return row

    async def decline(self, principal: Principal | None, offer_id: int) -> None:
        """Turn an offer down: the entry stays in line (never offered that slot again) and
        the slot goes to the next who fits."""
        caller = require(principal)
        async with self._sessions() as session:
            offer = await session.get(WaitlistOffer, offer_id)
        if offer is None or not access.party_to(
            caller, doctor_id=offer.doctor_id, patient_id=offer.patient_id
        ):
            raise NotFound(f"offer {offer_id} not found")
        doctor_id = offer.doctor_id

        async def work(session: AsyncSession) -> None:
            await events.locked_schedule(session, doctor_id)
            if not await self._close(session, offer_id, OfferState.declined, self._clock()):
                raise OfferGone("this offer is no longer open")

        await self._relay.transaction(work)
        await self._hand_on(doctor_id, [offer_id])

    async def expire(self) -> int:
        """End the offers whose time ran out and hand their slots on; how many ended here
        (any process may run this: each offer is ended by one). A doctor's lapsed offers end
        in one transaction under the doctor's lock and are handed on by one match, so a
        morning's worth lapsing at once moves on as fast as one."""
        now = self._clock()
        self._next_expiry = None  # what this look finds, and what on_event adds meanwhile
        async with self._sessions() as session:
            due = (
                await session.execute(
                    select(WaitlistOffer.id, WaitlistOffer.doctor_id)
                    .where(WaitlistOffer.state == OfferState.open, WaitlistOffer.expires_at <= now)
                    .order_by(WaitlistOffer.expires_at)
                    .limit(LAPSING)
                )
            ).all()
            later = (
                now  # more than a batch lapsed: look again at once
                if len(due) == LAPSING
                else await session.scalar(
                    select(func.min(WaitlistOffer.expires_at)).where(
                        WaitlistOffer.state == OfferState.open, WaitlistOffer.expires_at > now
                    )
                )
            )
        self._expiring(later)
        ended = 0
        for doctor_id, offer_ids in _by_doctor(due).items():

            async def work(
                session: AsyncSession, doctor_id: int = doctor_id, offer_ids: list[int] = offer_ids
            ) -> list[int]:
                await events.locked_schedule(session, doctor_id)
                at = self._clock()
                return [
                    i for i in offer_ids if await self._close(session, i, OfferState.lapsed, at)
                ]

            closed = await self._relay.transaction(work)
            ended += len(closed)
            await self._hand_on(doctor_id, closed)
        return ended

    async def _close(
        self, session: AsyncSession, offer_id: int, state: OfferState, now: datetime
    ) -> bool:
        # End an open offer (under its doctor's lock): the entry waits again (unless it left),
        # the patient's feed hears it. False when it was not open.
        ended = await session.execute(
            update(WaitlistOffer)
            .where(WaitlistOffer.id == offer_id, WaitlistOffer.state == OfferState.open)
            .values(state=state, ended_at=now)
        )
        if ended.rowcount == 0:  # type: ignore[attr-defined]
            return False
        offer = await session.get(WaitlistOffer, offer_id, populate_existing=True)
        assert offer is not None
        await session.execute(
            update(WaitlistEntry)
            .where(WaitlistEntry.id == offer.entry_id, WaitlistEntry.status == Waiting.offered)
            .values(status=Waiting.waiting, updated_at=now)
        )
        events.record_offer(session, offer)
        return True

    async def _hand_on(self, doctor_id: int, offer_ids: Sequence[int]) -> None:
        # After offers of one doctor ended: let their holds go, offer the slots to the next
        # who fit (one match for them all), and say what each slot nobody holds now is (free,
        # or booked meanwhile).
        if not offer_ids:
            return
        async with self._sessions() as session:
            offers = list(
                await session.scalars(  # in key order: two processes lock them alike
                    select(WaitlistOffer)
                    .where(WaitlistOffer.id.in_(offer_ids))
                    .order_by(WaitlistOffer.id)
                )
            )
        freed = [o for o in offers if o.hold_id is None]
        held = [(o, o.hold_id) for o in offers if o.hold_id is not None]
        cleared: list[str] = []
        if held:  # whoever clears a hold hands its slot on, once
            async with self._sessions.begin() as session:
                for offer, hold_id in held:
                    claimed = await session.execute(
                        update(WaitlistOffer)
                        .where(WaitlistOffer.id == offer.id, WaitlistOffer.hold_id == hold_id)
                        .values(hold_id=None)
                    )
                    if claimed.rowcount:  # type: ignore[attr-defined]
                        freed.append(offer)
                        cleared.append(hold_id)
        for hold_id in cleared:
            with contextlib.suppress(HoldsUnavailable):
                await self._holds.release(Hold.parse(hold_id))
        if not freed:
            return
        await self._match_quietly(doctor_id)
        unheld = []
        for offer in freed:
            try:
                if await self._holds.holder(doctor_id, offer.start_at) is not None:
                    continue  # offered again: its new holder announced it
            except HoldsUnavailable:
                pass
            unheld.append(offer.start_at)

        async def settle(session: AsyncSession) -> None:
            for start in unheld:
                await events.record_settled(session, doctor_id, start)

        if unheld:
            await self._relay.transaction(settle)

    # -- matching ------------------------------------------------------------------------

    async def match(self, doctor_id: int) -> int:
        """Offer free slots of a doctor to the waiting entries that fit them, first in line
        first; how many offers were made."""
        async with self._sessions() as session:
            waiting = [
                e for e in await _live_entries(session, doctor_id) if e.status is Waiting.waiting
            ]
        if not waiting:
            return 0
        free: dict[int | None, tuple[list[Slot], timedelta, ZoneInfo]] = {}
        for type_id in {entry.visit_type_id for entry in waiting}:
            first = min(e.first_day for e in waiting if e.visit_type_id == type_id)
            last = max(e.last_day for e in waiting if e.visit_type_id == type_id)
            try:
                layout = await self._calendar.layout(doctor_id, first, last, type_id, DESK)
            except InvalidInput:
                continue  # the type was removed meanwhile: its entries keep waiting
            slots = [slot for slot in layout.slots if slot.state == "free"]
            free[type_id] = (slots, layout.hours.span, layout.hours.zone)
        taken: list[Hold] = []

        async def work(session: AsyncSession) -> int:
            await events.locked_schedule(session, doctor_id)
            entries = await _live_entries(session, doctor_id)
            open_rows = await session.scalars(
                select(WaitlistOffer).where(
                    WaitlistOffer.doctor_id == doctor_id, WaitlistOffer.state == OfferState.open
                )
            )
            busy = [(o.start_at, o.end_at) for o in open_rows]
            ids = [e.id for e in entries]
            tried = {
                (entry_id, start)
                for entry_id, start in await session.execute(
                    select(WaitlistOffer.entry_id, WaitlistOffer.start_at).where(
                        WaitlistOffer.entry_id.in_(ids)
                    )
                )
            }
            moving = await _starts_of(session, [e.moving_id for e in entries if e.moving_id])
            away = set(  # deactivated accounts keep their place but are offered nothing
                await session.scalars(
                    select(Patient.id).where(
                        Patient.id.in_({e.patient_id for e in entries}), Patient.active.is_(False)
                    )
                )
            )
            hours = schedules.availability_of(await schedules.load_row(session, doctor_id))
            types = await visits.of_doctor(session, doctor_id, hours)
            made = 0
            now = self._clock()
            for entry in entries:
                if (
                    entry.status is not Waiting.waiting
                    or entry.visit_type_id not in free
                    or entry.patient_id in away
                ):
                    continue
                slots, span, zone = free[entry.visit_type_id]
                visit = visits.pick(types, entry.visit_type_id, DESK, doctor_id)
                before = moving.get(entry.moving_id or 0)
                for slot in slots:
                    start, end = slot.start, slot.start + span
                    if (
                        (entry.id, start) in tried
                        or (before is not None and start >= before)
                        or any(s < end and start < e for s, e in busy)
                        or not fits(entry, start, zone)
                        or not await visits.is_free(session, doctor_id, start, visit)
                    ):
                        continue
                    hold = await self._hold(doctor_id, start, entry.patient_id)
                    if hold is False:
                        continue  # someone is holding it: they may book it
                    if hold is not None:
                        taken.append(hold)
                    offer = WaitlistOffer(
                        entry_id=entry.id,
                        doctor_id=doctor_id,
                        patient_id=entry.patient_id,
                        start_at=start,
                        end_at=end,
                        visit_type_id=visit.id,
                        hold_id=None if hold is None else hold.id,
                        state=OfferState.open,
                        created_at=now,
                        expires_at=now + self._offer,
                    )
                    session.add(offer)
                    entry.status = Waiting.offered
                    entry.updated_at = now
                    await session.flush()
                    busy.append((start, end))
                    await events.record_slot(session, doctor_id, start, "held")
                    events.record_offer(session, offer)
                    await notices.write(
                        session,
                        [
                            notices.rows(
                                Notice.offer,
                                "patient",
                                entry.patient_id,
                                now,
                                start=start,
                                payload={"offer_id": offer.id},
                            )
                        ],
                    )
                    made += 1
                    break
            return made

        try:
            return await self._relay.transaction(work)
        except BaseException:
            for hold in taken:
                with contextlib.suppress(HoldsUnavailable):
                    await self._holds.release(hold)
            raise

    async def _hold(
        self, doctor_id: int, start: datetime, patient_id: int
    ) -> Hold | Literal[False] | None:
        # The offer's hold: the patient's for the offer's lifetime (uncapped, as a booking's
        # claim is). False: someone else holds the slot. None: holds are away, the database's
        # keys alone keep the offer exclusive.
        ms = int(self._offer.total_seconds() * 1000)
        try:
            return await self._holds.take(Hold.new(doctor_id, start, patient_id), ms, 0)
        except SlotHeld as exc:
            return exc.holder if exc.holder.patient_id == patient_id else False
        except HoldsUnavailable:
            return None

    async def _match_quietly(self, doctor_id: int) -> None:
        try:
            await self.match(doctor_id)
        except Exception as exc:  # the loop tries again
            log.warning("waitlist of doctor %d not matched: %r", doctor_id, exc)
            self.poke(doctor_id)

    # -- the loop ------------------------------------------------------------------------

    def on_event(self, message: Event) -> None:
        """From the relay, for every event published: a slot turning free or new hours may
        let someone waiting in; an offer made lapses at its time; an offer withdrawn has a
        hold to let go."""
        if message["type"] == "hours" or (message["type"] == "slot" and message["state"] == "free"):
            self.poke(message["doctor_id"])
        elif message["type"] == "offer":
            if message["state"] == OfferState.open.value:
                self._expiring(datetime.fromisoformat(message["expires_at"]))
            elif message["state"] == OfferState.withdrawn.value:
                self._withdrawn = True
                self._poked.set()

    def poke(self, doctor_id: int) -> None:
        self._pending.add(doctor_id)
        self._poked.set()

    def _expiring(self, at: datetime | None) -> None:
        # An open offer lapses at `at`: the loop looks then, if not earlier.
        if at is not None and (self._next_expiry is None or at < self._next_expiry):
            self._next_expiry = at

    async def run(self, stop: asyncio.Event, every: float = 0.5) -> None:
        """Until `stop`: match the doctors poked, end lapsed offers when one is due, let the
        holds of withdrawn offers go, and every FULL_MATCH seconds look at every offer and
        match every doctor someone waits for. An idle process asks the database nothing
        between those sweeps (it asked twice every half second)."""
        last_full = -FULL_MATCH
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), every)
            if stop.is_set():
                return
            self._poked.clear()
            doctors, self._pending = self._pending, set()
            full = clock_time.monotonic() - last_full >= FULL_MATCH
            try:
                if full or (self._next_expiry is not None and self._next_expiry <= self._clock()):
                    await self.expire()
                if full or self._withdrawn:
                    self._withdrawn = False
                    await self._let_withdrawn_go()
                if full:
                    last_full = clock_time.monotonic()
                    doctors |= await self._end_past_and_list()
            except Exception as exc:  # the loop outlives an outage
                log.warning("waitlist sweep failed: %r", exc)
                self._withdrawn = True  # and tries both again on the next round
                self._next_expiry = self._clock()
            for doctor_id in sorted(doctors):
                await self._match_quietly(doctor_id)

    async def _let_withdrawn_go(self) -> None:
        # An offer withdrawn because its patient booked another time with the doctor (in the
        # booking's transaction, hub.ledger) still has its hold: release it, hand the slot on.
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(WaitlistOffer.id, WaitlistOffer.doctor_id).where(
                        WaitlistOffer.state == OfferState.withdrawn,
                        WaitlistOffer.hold_id.is_not(None),
                    )
                )
            ).all()
        for doctor_id, offer_ids in _by_doctor(rows).items():
            await self._hand_on(doctor_id, offer_ids)

    async def _end_past_and_list(self) -> set[int]:
        # Entries whose dates are over leave the line; the doctors someone still waits for.
        yesterday = self._clock().date() - timedelta(days=1)
        async with self._sessions.begin() as session:
            await session.execute(
                update(WaitlistEntry)
                .where(WaitlistEntry.status == Waiting.waiting, WaitlistEntry.last_day < yesterday)
                .values(status=Waiting.ended, updated_at=self._clock())
            )
            doctors = await session.scalars(
                select(WaitlistEntry.doctor_id)
                .where(WaitlistEntry.status == Waiting.waiting)
                .distinct()
            )
            return set(doctors)


def _by_doctor(rows: Sequence[tuple[int, int]]) -> dict[int, list[int]]:
    # (offer id, doctor id) rows as each doctor's offer ids, in the rows' order.
    grouped: dict[int, list[int]] = {}
    for offer_id, doctor_id in rows:
        grouped.setdefault(doctor_id, []).append(offer_id)
    return grouped


def _ended(offer: WaitlistOffer) -> str:
    if offer.state is OfferState.open:
        return "lapsed"
    return {"accepted": "taken", "withdrawn": "withdrawn"}.get(offer.state.value, offer.state.value)


async def _moving(
    session: AsyncSession,
    patient_id: int,
    doctor_id: int,
    appointment_id: int | None,
    now: datetime,
) -> int | None:
    # The appointment an accepted offer would move: the one named, which must be the
    # patient's upcoming one with this doctor, or else their earliest upcoming one.
    query = (
        select(Appointment.id)
        .where(
            Appointment.patient_id == patient_id,
            Appointment.doctor_id == doctor_id,
            Appointment.status == Status.scheduled,
            Appointment.start_at > now,
        )
        .order_by(Appointment.start_at)
    )
    if appointment_id is None:
        return await session.scalar(query.limit(1))
    found = await session.scalar(query.where(Appointment.id == appointment_id))
    if found is None:
        raise InvalidInput(
            "that is not an upcoming appointment of the patient with this doctor",
            [_field("appointment_id", "not an upcoming appointment with this doctor")],
        )
    return found


async def _starts_of(session: AsyncSession, ids: list[int]) -> dict[int, datetime]:
    if not ids:
        return {}
    rows = await session.execute(
        select(Appointment.id, Appointment.start_at).where(
            Appointment.id.in_(ids), Appointment.status == Status.scheduled
        )
    )
    return {id_: start for id_, start in rows}


async def _views(session: AsyncSession, rows: list[WaitlistEntry]) -> list[EntryView]:
    # Each entry with its place in its doctor's line and its open offer.
    doctors = {row.doctor_id for row in rows}
    lines: dict[int, list[int]] = {}
    for doctor_id in doctors:
        lines[doctor_id] = [e.id for e in await _live_entries(session, doctor_id)]
    ids = [row.id for row in rows]
    offers = {
        o.entry_id: o
        for o in await session.scalars(
            select(WaitlistOffer).where(
                WaitlistOffer.entry_id.in_(ids), WaitlistOffer.state == OfferState.open
            )
        )
    }
    views = []
    for row in rows:
        line = lines.get(row.doctor_id, [])
        offer = offers.get(row.id)
        views.append(
            EntryView(
                row.id,
                row.doctor_id,
                row.patient_id,
                row.first_day,
                row.last_day,
                row.visit_type_id,
                _spans(row.times),
                row.urgent,
                row.status,
                line.index(row.id) + 1 if row.id in line else None,
                row.moving_id,
                row.created_at,
                None if offer is None else _offer_view(offer),
            )
        )
    return views
