"""Sockets that never speak: closed once their time to send a request is up, capped per peer
address, and never in the way of anyone else (a real `python -m hub serve` process)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from hub.config import Settings
from hub.listener import Flag, Inbox, Listener, Session
from hub.ws.queue import Outgoing
from tests.server import serve_in_thread, serve_process, stop

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
        slow.sendall(b"GET /specializations/ HTTP/1.1\r\nHost: hub\r\nX-Slow: ")
        started = time.monotonic()
        while time.monotonic() - started < TIMEOUT * 3:
            slow.sendall(b"a")  # one header byte at a time: uvicorn's keep-alive timer stops
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


def _answer(sock: socket.socket) -> bytes:
    """Everything the hub sends until it closes the socket (5 s at most)."""
    sock.settimeout(5)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_request_head_past_its_size_is_refused_431_and_a_large_body_is_not(
    settings: Settings,
) -> None:
    with serve_in_thread(settings) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as endless:
            # One header value that never ends: llhttp would gather it for as long as it came.
            endless.sendall(b"GET /specializations/ HTTP/1.1\r\nHost: hub\r\nX-Big: ")
            endless.sendall(b"a" * (Listener.max_head * 4))
            assert _answer(endless).startswith(b"HTTP/1.1 431 ")
        with socket.create_connection(("127.0.0.1", port)) as many:  # a whole head at once
            lines = b"".join(b"X-Line-%d: %s\r\n" % (n, b"b" * 100) for n in range(400))
            many.sendall(b"GET /specializations/ HTTP/1.1\r\nHost: hub\r\n" + lines + b"\r\n")
            assert _answer(many).startswith(b"HTTP/1.1 431 ")
        # A body sent in the same write as its headers is no part of the head.
        body = json.dumps({"username": "x" * (Listener.max_head * 2), "password": "y"}).encode()
        with socket.create_connection(("127.0.0.1", port)) as large:
            large.sendall(
                b"POST /patients/login HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            )
            status = _answer(large).split(b"\r\n", 1)[0]
            assert status.startswith(b"HTTP/1.1 4") and b" 431 " not in status, status
        assert httpx.get(f"{url}/specializations/", timeout=5).status_code == 200


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


def test_a_session_writes_a_frame_at_once_only_while_open_and_its_socket_takes_writes(
    settings: Settings,
) -> None:
    with serve_in_thread(settings) as (url, server):
        with connect(url.replace("http", "ws", 1) + "/ws", open_timeout=5) as ws:
            session = _accepted_session(server)

            def now(work: Callable[[], Any]) -> Any:  # on the server's loop, its result
                async def call() -> Any:
                    return work()

                return asyncio.run_coroutine_threadsafe(call(), session.loop).result(5)

            assert now(lambda: session.write_now('{"type":"pong"}')) is True
            assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}
            now(session.pause_writing)  # the socket's buffer is past its high-water mark
            assert now(lambda: session.write_now('{"type":"pong","ref":"late"}')) is False
            now(session.resume_writing)
            ws.close()
        deadline = time.monotonic() + 5
        while not session.disconnected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert now(lambda: session.write_now('{"type":"pong"}')) is False


def _accepted_session(server: Any) -> Session:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for protocol in list(server.server_state.connections):
            if isinstance(protocol, Session) and protocol.handshake_complete:
                return protocol
        time.sleep(0.01)
    raise AssertionError("no WebSocket session was accepted")


def test_a_queue_sent_at_once_stops_where_the_socket_refuses_and_flushes_the_rest_in_order() -> (
    None
):
    queue = Outgoing()
    for n in range(4):
        queue.put_text(f"frame {n}")
    written: list[str] = []

    def write(frame: str) -> bool:  # the socket takes two frames, then is full
        if len(written) == 2:
            return False
        written.append(frame)
        return True

    assert queue.send_now(write) is False
    assert written == ["frame 0", "frame 1"] and len(queue) == 2
    flushed: list[str] = []

    async def send(frame: str) -> None:
        flushed.append(frame)

    asyncio.run(queue.flush(send))
    assert flushed == ["frame 2", "frame 3"] and len(queue) == 0
    assert queue.send_now(write) is True  # nothing left: nothing written
