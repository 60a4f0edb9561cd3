"""static/live.js in Chromium against a fake WebSocket: the client's half of the protocol's
version rules. A slow reader's pending `slot` event is replaced in place by a newer one for the
same slot, marked `collapsed` (README, "WebSocket protocol"): the client applies every event,
keeps the highest version seen, and resyncs with `since` only when an event that is not
collapsed skips ahead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

STATIC = Path(__file__).resolve().parent.parent / "static"
ORIGIN = "http://hub.test"
DOCTOR = 7
WINDOW = {"from": "2026-12-07T00:00:00Z", "to": "2026-12-14T00:00:00Z"}
SNAPSHOT_VERSION = 4

# The page imports live.js as app.js does, with a WebSocket that records what the client sends
# and lets the test play the hub's part, one frame at a time.
HARNESS = """
import { Live } from '/live.js';

const sockets = [];

class FakeSocket extends EventTarget {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(url) {
    super();
    this.url = url;
    this.readyState = FakeSocket.CONNECTING;
    this.frames = [];
    sockets.push(this);
  }

  send(text) {
    this.frames.push(JSON.parse(text));
  }

  close(code = 1000, reason = '') {
    if (this.readyState === FakeSocket.CLOSED) return;
    this.readyState = FakeSocket.CLOSED;
    this.dispatchEvent(new CloseEvent('close', { code, reason }));
  }

  receive(message) {
    this.dispatchEvent(new MessageEvent('message', { data: JSON.stringify(message) }));
  }
}

window.WebSocket = FakeSocket;
const live = new Live(() => 'token');
const heard = [];
for (const type of ['snapshot', 'slot', 'resynced']) {
  live.on(type, (detail) => heard.push({ heard: type, ...detail }));
}
const newest = () => sockets[sockets.length - 1];

window.harness = {
  live,
  heard,
  sent: () => sockets.flatMap((socket) => socket.frames),
  deliver: (message) => newest().receive(message),
  connect() {
    const socket = newest();
    socket.readyState = FakeSocket.OPEN;
    socket.dispatchEvent(new Event('open'));
    socket.receive({ type: 'ready', user: { role: 'patient', id: 1 }, ref: 'auth' });
  },
  drop() {
    newest().close(1006, '');
    live.retryNow();
  },
};
"""
PAGE = '<!doctype html><meta charset="utf-8"><script type="module" src="/harness.js"></script>'


def serve(route: Any) -> None:
    path = route.request.url.removeprefix(ORIGIN).split("?")[0]
    if path == "/":
        route.fulfill(body=PAGE, content_type="text/html")
    elif path == "/harness.js":
        route.fulfill(body=HARNESS, content_type="text/javascript")
    elif (STATIC / path.lstrip("/")).is_file() and path.endswith(".js"):
        route.fulfill(path=str(STATIC / path.lstrip("/")), content_type="text/javascript")
    else:
        route.fulfill(status=404, body="")


class Client:
    """The page's Live, watching DOCTOR since a snapshot at SNAPSHOT_VERSION."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def deliver(self, message: dict[str, Any]) -> None:
        self.page.evaluate("message => harness.deliver(message)", message)

    def slot(self, hour: int, version: int, state: str = "held", **extra: Any) -> None:
        start = f"2026-12-08T{hour:02d}:00:00Z"
        message = {"type": "slot", "doctor_id": DOCTOR, "start": start, "state": state}
        self.deliver({**message, "version": version, **extra})

    def resynced(self, version: int, ref: str) -> None:
        self.deliver({"type": "resynced", "doctor_id": DOCTOR, "version": version, "ref": ref})

    def watches(self) -> list[dict[str, Any]]:
        sent = self.page.evaluate("() => harness.sent()")
        return [frame for frame in sent if frame["type"] == "watch"]

    def heard(self, kind: str) -> list[dict[str, Any]]:
        heard = self.page.evaluate("() => harness.heard")
        return [event for event in heard if event["heard"] == kind]

    def applied(self) -> list[tuple[int, int]]:
        """(hour, version) of every slot event the views were given."""
        return [(int(e["start"][11:13]), e["version"]) for e in self.heard("slot")]

    def version(self) -> int | None:
        version = self.page.evaluate(f"() => harness.live.versionOf({DOCTOR})")
        return None if version is None else int(version)


@pytest.fixture
def client(browser: Any) -> Iterator[Client]:
    context = browser.new_context()
    context.set_default_timeout(10_000)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(f"{error}"))
    page.route(f"{ORIGIN}/**", serve)
    page.goto(f"{ORIGIN}/")
    page.wait_for_function("() => window.harness")
    page.evaluate(
        "([doctor, window]) => {"
        " harness.live.start(); harness.connect();"
        " harness.live.watch(doctor, window.from, window.to); }",
        [DOCTOR, WINDOW],
    )
    live = Client(page)
    [first] = live.watches()
    assert "since" not in first
    live.deliver(
        {
            "type": "snapshot",
            "doctor_id": DOCTOR,
            "version": SNAPSHOT_VERSION,
            "timezone": "UTC",
            "slots": [],
            "ref": first["ref"],
        }
    )
    assert live.version() == SNAPSHOT_VERSION
    yield live
    context.close()
    assert errors == [], "uncaught errors in the page"


def test_a_collapsed_slot_event_that_skips_versions_is_applied_without_a_resync(
    client: Client,
) -> None:
    client.slot(10, 5)
    client.slot(11, 8, "booked", collapsed=True)  # stands for 6, 7 and 8
    assert len(client.watches()) == 1, "a collapsed event made the client resync"
    assert client.applied() == [(10, 5), (11, 8)]
    assert client.version() == 8


def test_an_older_event_of_another_slot_after_a_collapsed_one_is_applied(
    client: Client,
) -> None:
    # The hub's queue held 10:00 v5 and 11:00 v6 when 10:00 changed again (v7): the newer state
    # took the older one's place, so v7 comes first, then v6, then what follows.
    client.slot(10, 7, "booked", collapsed=True)
    client.slot(11, 6)
    client.slot(12, 8)
    assert len(client.watches()) == 1
    assert client.applied() == [(10, 7), (11, 6), (12, 8)]
    assert client.version() == 8


def test_a_slot_event_that_skips_versions_uncollapsed_resyncs_with_since(
    client: Client,
) -> None:
    client.slot(10, 5)
    client.slot(11, 8)  # 6 and 7 were lost
    resync = client.watches()[1:]
    assert [frame.get("since") for frame in resync] == [5]
    assert client.applied() == [(10, 5)]

    for hour, version in ((12, 6), (13, 7), (11, 8)):
        client.slot(hour, version)
    client.resynced(8, resync[0]["ref"])
    assert client.applied() == [(10, 5), (12, 6), (13, 7), (11, 8)]
    assert len(client.heard("resynced")) == 1
    assert len(client.watches()) == 2, "the client started over after a complete replay"


def test_a_reconnect_after_a_collapsed_event_resyncs_from_the_last_complete_version(
    client: Client,
) -> None:
    # 10:00 v7 came first in place of an older event; 11:00 v6 was still on its way when the
    # connection dropped. Asking from 7 would never bring it back.
    client.slot(10, 7, "booked", collapsed=True)
    client.page.evaluate("() => harness.drop()")
    client.page.evaluate("() => harness.connect()")
    resync = client.watches()[1:]
    assert [frame.get("since") for frame in resync] == [SNAPSHOT_VERSION]

    client.slot(10, 7, "booked", collapsed=True)  # seen already: not applied twice
    client.slot(11, 6)
    client.resynced(7, resync[0]["ref"])
    assert client.applied() == [(10, 7), (11, 6)]
    assert len(client.heard("resynced")) == 1
    assert client.version() == 7
