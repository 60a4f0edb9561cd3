from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import pytest

from hub.idempotency import Key
from tests.conftest import slot


def test_the_same_request_has_the_same_fingerprint_in_any_offset() -> None:
    elsewhere = slot(10).astimezone(timezone(timedelta(hours=3)))
    assert Key.of(1, "k", 2, slot(10), None) == Key.of(1, "k", 2, elsewhere, None)


@pytest.mark.parametrize(
    "other",
    [(3, slot(10), None), (2, slot(11), None), (2, slot(10), "2-1-1-ab")],
    ids=["doctor", "start", "hold"],
)
def test_another_request_has_another_fingerprint(other: tuple[Any, ...]) -> None:
    assert Key.of(1, "k", 2, slot(10), None).fingerprint != Key.of(1, "k", *other).fingerprint
