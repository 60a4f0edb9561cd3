from __future__ import annotations

from datetime import date

import pytest

from hub.calendar import Window
from hub.errors import InvalidInput
from hub.protocol import SlotEvent
from hub.ws.watches import MAX_HELD_BACK, Watches

WINDOW = Window(date(2030, 1, 7), date(2030, 1, 7))


def event(version: int, doctor_id: int = 7) -> SlotEvent:
    start = f"2030-01-07T{version % 24:02d}:00:00Z"
    return {
        "type": "slot",
        "doctor_id": doctor_id,
        "start": start,
        "state": "held",
        "version": version,
    }


def synced(version: int) -> Watches:
    watches = Watches()
    watches.begin(7, WINDOW)
    assert watches.caught_up(7, version) == []
    return watches


def test_the_next_version_is_sent_and_an_older_one_ignored() -> None:
    watches = synced(3)
    assert watches.arrive(event(4)) == "send"
    assert watches.arrive(event(4)) == "ignore"
    assert watches.arrive(event(2)) == "ignore"


def test_a_gap_asks_for_a_repair_from_the_last_version_sent() -> None:
    watches = synced(3)
    assert watches.arrive(event(6)) == "repair"
    assert watches.repairing(7) == 3
    assert watches.arrive(event(7)) == "hold"  # while the repair runs


def test_what_arrives_during_a_sync_follows_it_in_order() -> None:
    watches = Watches()
    watches.begin(7, WINDOW)
    for version in (6, 4, 5, 9):
        assert watches.arrive(event(version)) == "hold"
    follow = watches.caught_up(7, 3)
    assert follow is not None
    assert [m["version"] for m in follow] == [4, 5, 6]
    assert watches.arrive(event(7)) == "send"


def test_a_doctor_nobody_watches_is_ignored() -> None:
    assert synced(3).arrive(event(4, doctor_id=8)) == "ignore"


def test_what_is_held_back_is_bounded_and_the_catch_up_goes_on_after_it() -> None:
    watches = Watches()
    watches.begin(7, WINDOW)
    for version in range(1, 5_002):  # 5,001 events while a slow snapshot is built
        watches.arrive(event(version))
    watch = watches.get(7)
    assert watch is not None and len(watch.held) <= MAX_HELD_BACK
    assert watches.caught_up(7, 0) is None  # some were dropped: catch up from 0 again
    follow = watches.caught_up(7, 5_000)  # the second catch-up reached 5,000
    assert follow is not None and [m["version"] for m in follow] == [5_001]


def test_watching_past_the_cap_is_refused_and_a_refused_watch_is_undone() -> None:
    watches = Watches(limit=1)
    watches.begin(7, WINDOW)
    with pytest.raises(InvalidInput):
        watches.begin(8, WINDOW)
    before = watches.begin(7, WINDOW)
    watches.restore(7, before)
    assert watches.doctors() == [7]
    fresh = Watches()
    fresh.restore(9, fresh.begin(9, WINDOW))
    assert 9 not in fresh
