"""Sockets that never speak: closed once their time to send a request is up, capped per peer
address, and never in the way of anyone else (a real `python -m hub serve` process)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import httpx

from hub.config import Settings
from hub.listener import Flag, Inbox
from tests.server import serve_process, stop

CAP = 20
TIMEOUT = 2.0


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the hub closed it (what it sent before is read and dropped)."""
    sock.setblocking(False)
    try:
        while sock.recv(4096):
            pass
        return True
    except BlockingIOError:
        return False  # open, nothing more to read
    except ConnectionError:
        return True


def _limits(settings: Settings, backend: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    return serve_process(
        settings,
        backend,
        tmp,
        tmp / "hub.log",
        HUB_MAX_SOCKETS_PER_ADDRESS=str(CAP),
        HUB_HEADER_TIMEOUT=str(TIMEOUT),
        FORWARDED_ALLOW_IPS="10.255.255.1",  # so this test's own address is not exempt
    )


def test_silent_and_slow_header_sockets_are_closed_in_time(
    settings: Settings, backend: str, tmp_path: Path
) -> None:
    process, url = _limits(settings, backend, tmp_path)
    port = int(url.rsplit(":", 1)[1])
    silent, slow, kept = (socket.create_connection(("127.0.0.1", port)) for _ in range(3))
    try:
        kept.sendall(b"GET /specializations/ HTTP/1.1\r\nHost: hub\r\n\r\n")
        assert kept.recv(12).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        while time.monotonic() - started < TIMEOUT * 3:
            slow.sendall(b"X")  # one header byte at a time: uvicorn's keep-alive timer stops
            time.sleep(0.3)
            if _closed_by_peer(slow):
                break
        else:
            raise AssertionError("a slow-header socket was kept past its time")
        assert _closed_by_peer(silent)
        time.sleep(TIMEOUT)
        assert _closed_by_peer(kept)  # kept alive but silent: the next request is due in time
    finally:
        for sock in (silent, slow, kept):
            sock.close()
        stop(process)


def test_sockets_past_the_cap_of_one_address_are_closed_and_others_are_served(
    settings: Settings, backend: str, tmp_path: Path
) -> None:
    process, url = _limits(settings, backend, tmp_path)
    port = int(url.rsplit(":", 1)[1])
    flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(CAP * 5)]
    try:
        time.sleep(0.5)
        open_ = [sock for sock in flood if not _closed_by_peer(sock)]
        assert len(open_) == CAP
        elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")  # another client
        with httpx.Client(transport=elsewhere, timeout=5) as other:
            assert other.get(f"{url}/specializations/").status_code == 200
        # The address itself is refused only while its cap is taken.
        for sock in open_:
            sock.close()
        time.sleep(0.3)
        assert httpx.get(f"{url}/specializations/", timeout=5).status_code == 200
    finally:
        for sock in flood:
            sock.close()
        stop(process)


async def test_the_sessions_inbox_is_a_fifo_that_keeps_an_item_its_cancelled_getter_missed() -> (
    None
):
    inbox: Inbox[int] = Inbox()
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert (inbox.qsize(), await inbox.get(), await inbox.get(), inbox.empty()) == (2, 1, 2, True)

    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait(3)  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs: the item is the second's
    assert await second == 3
    assert first.cancelled() and inbox.empty()


async def test_the_sessions_writable_flag_wakes_every_waiter_and_can_be_cleared() -> None:
    flag = Flag()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    flag.clear()
    late = asyncio.create_task(flag.wait())
    await asyncio.sleep(0.01)
    assert not late.done() and not flag.is_set()
    late.cancel()
    flag.set()
    assert await flag.wait() is True
