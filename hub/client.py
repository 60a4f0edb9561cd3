"""`python -m hub.client`: sign in, then watch a doctor or send commands over /ws.

    python -m hub.client --email a@example.org --role patient watch 7 --from 2026-12-01
    python -m hub.client --email a@example.org send '{"type": "hold", "doctor_id": 7,
        "start": "2026-12-01T10:00:00Z"}'
    python -m hub.client --email a@example.org shell   # one JSON command per line on stdin

Events and replies are printed as JSON lines. The password comes from HUB_PASSWORD or a prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROLES = ["patient", "doctor", "admin", "staff"]
_A = {"patient": "a patient", "doctor": "a doctor", "admin": "an admin", "staff": "the front desk"}


def login(base: str, role: str, email: str, password: str) -> str:
    body = urllib.parse.urlencode({"username": email, "password": password}).encode()
    path = "/staff" if role == "staff" else f"/{role}s"
    with urllib.request.urlopen(f"{base}{path}/login", body, timeout=10) as answer:
        return str(json.load(answer)["access_token"])


def refused(role: str) -> str:
    """What a 401 at sign-in means: each role signs in at its own door, so say the others."""
    others = [r for r in ROLES if r != role]
    accounts = " or ".join(_A[r] for r in others)
    tries = " or ".join(f"--role {r}" for r in others)
    return f"wrong email or password for {_A[role]}: is this {accounts}? try {tries}"


async def _print_until_closed(ws: ClientConnection, seconds: float | None) -> None:
    try:
        async with asyncio.timeout(seconds):
            async for frame in ws:
                print(frame, flush=True)
    except TimeoutError:
        return


# Answers after which the same booking is sent again (same key): the hub or a service it
# needs was away, or the answer was lost with the connection.
RETRYABLE = {"unavailable", "holds_unavailable", "overloaded", "rate_limited"}
ATTEMPTS = 6
ANSWER_TIMEOUT = 15.0


async def book(url: str, token: str, doctor_id: int, start: str, key: str) -> dict[str, Any]:
    """Book a slot with an idempotency key, and through lost connections, timeouts and 503s
    send it again with the same key until the hub answers for good: a booking that committed
    while its answer was lost is then found by the retry, never refused as taken."""
    command = {"type": "book", "doctor_id": doctor_id, "start": start, "idempotency_key": key}
    for attempt in range(ATTEMPTS):
        try:
            async with connect(url, max_size=2**20) as ws:
                await ws.send(json.dumps({"type": "auth", "token": token}))
                await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT)
                await ws.send(json.dumps({**command, "ref": "book"}))
                while True:
                    reply = json.loads(await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT))
                    if reply.get("ref") != "book":
                        continue
                    if reply.get("type") != "error" or reply.get("code") not in RETRYABLE:
                        return dict(reply)
                    break
        except (OSError, TimeoutError, ConnectionClosed):
            pass
        await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
    return {"type": "error", "code": "unavailable", "message": f"no answer in {ATTEMPTS} tries"}


async def run(args: argparse.Namespace, token: str) -> int:
    url = args.url.replace("http", "ws", 1).rstrip("/") + "/ws"
    if args.command == "book":
        reply = await book(url, token, args.doctor_id, args.start, args.key or uuid.uuid4().hex)
        print(json.dumps(reply), flush=True)
        return 0 if reply.get("type") == "booked" else 1
    async with connect(url, max_size=2**20) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        print(await ws.recv(), flush=True)
        if args.command == "watch":
            today = datetime.now(UTC).date()
            first = args.first or today.isoformat()
            last = args.last or (today + timedelta(days=6)).isoformat()
            watch = {"type": "watch", "doctor_id": args.doctor_id, "from": first, "to": last}
            await ws.send(json.dumps(watch))
            await _print_until_closed(ws, None)
        elif args.command == "send":
            for text in args.messages:
                await ws.send(text)
            await _print_until_closed(ws, args.wait)
        else:
            printer = asyncio.create_task(_print_until_closed(ws, None))
            loop = asyncio.get_running_loop()
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                if line.strip():
                    await ws.send(line.strip())
            await asyncio.sleep(args.wait)
            printer.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        epilog="The password comes from HUB_PASSWORD, or a prompt.",
        prog="python -m hub.client",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--email", required=True)
    parser.add_argument("--role", choices=ROLES, default="patient")
    commands = parser.add_subparsers(dest="command", required=True)
    watch = commands.add_parser("watch", help="print a doctor's live slot events")
    watch.add_argument("doctor_id", type=int)
    watch.add_argument("--from", dest="first", help="YYYY-MM-DD (default today)")
    watch.add_argument("--to", dest="last", help="YYYY-MM-DD (default today + 6 days)")
    send = commands.add_parser("send", help="send JSON commands, print what comes back")
    send.add_argument("messages", nargs="+")
    send.add_argument("--wait", type=float, default=2.0, help="seconds to keep printing")
    booking = commands.add_parser(
        "book", help="book a slot, retrying with one idempotency key until answered"
    )
    booking.add_argument("doctor_id", type=int)
    booking.add_argument("start", help="ISO 8601 with an offset, e.g. 2030-01-07T10:00:00Z")
    booking.add_argument("--key", help="the Idempotency key (default: a new one)")
    shell = commands.add_parser("shell", help="send one JSON command per line of stdin")
    shell.add_argument("--wait", type=float, default=2.0)
    args = parser.parse_args(argv)
    try:
        password = os.environ.get("HUB_PASSWORD") or getpass.getpass("password: ")
    except EOFError:
        print("hub.client: no password: set HUB_PASSWORD or run it in a terminal", file=sys.stderr)
        return 2
    try:
        token = login(args.url.rstrip("/"), args.role, args.email, password)
    except urllib.error.HTTPError as exc:
        reason = refused(args.role) if exc.code == 401 else str(exc)
        print(f"hub.client: cannot sign in: {reason}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hub.client: cannot sign in: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args, token))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
