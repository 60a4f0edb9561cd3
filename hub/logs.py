"""What the hub's log holds back: a flood of one line.

A fault that repeats in a tight loop (a full file-descriptor table made the accept loop log
`Too many open files` thousands of times a second: 165 MB in a minute) must not fill the disk.
`Flood` lets each kind of line (its logger, level and message template, whatever the values)
through `BURST` times per `WINDOW` seconds; the rest are counted, and the next line of that
kind to pass says how many were held back.

And what it never writes: the token of a link that manages an appointment, which is a path
segment of its REST calls (`/manage/<token>`); `Redact` writes `/manage/…` in its place. Nor
the values of a query string (the front desk searches patients by name, email, phone or date
of birth: `/patients/?q=…`).
"""

from __future__ import annotations

import logging
import re
import time

BURST = 10
WINDOW = 60.0
WATCHED = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")


class Flood(logging.Filter):
    def __init__(self, burst: int = BURST, window: float = WINDOW) -> None:
        super().__init__()
        self._burst, self._window = burst, window
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # kind: [window start, passed]
        self._held: dict[tuple[str, int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        window = self._seen.get(kind)
        if window is None or now - window[0] >= self._window:
            if len(self._seen) > 10_000:  # a bound on the kinds remembered
                self._seen.clear()
            window = self._seen[kind] = [now, 0]
        if window[1] >= self._burst:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        window[1] += 1
        if held := self._held.pop(kind, 0):
            record.msg = f"{record.msg} ({held} more like this held back)"
        return True


def hold_back_floods() -> None:
    """Put one `Flood` on every handler of the loggers the hub and uvicorn write to (once),
    but the access log's: its lines are one template, a line per request, and all of them
    count (the flood would let 10 requests a minute through)."""
    access = logging.getLogger("uvicorn.access").handlers
    handlers = [h for name in WATCHED for h in logging.getLogger(name).handlers if h not in access]
    if any(isinstance(f, Flood) for h in handlers for f in h.filters):
        return
    flood = Flood()
    for handler in handlers:
        handler.addFilter(flood)


SECRET_PATH = re.compile(r"(/manage/|/feeds/)[^/\s?#\"']+")  # a calendar feed's too
QUERY_VALUE = re.compile(r"([?&][^=&\s?#\"']+=)[^&\s#\"']+")
# A token or password in a JSON text (uvicorn's WebSocket frames at debug level: an `auth`
# command), and a whole JWT anywhere.
SECRET_FIELD = re.compile(r"(\"[a-z_]*(?:token|password)\"\s*:\s*\")[^\"']*")
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


def redact(text: str) -> str:
    """`text` without a manage link's token or a query string's values."""
    text = QUERY_VALUE.sub(r"\1…", SECRET_PATH.sub(r"\1…", text))
    return JWT.sub("…", SECRET_FIELD.sub(r"\1…", text))


class Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):  # uvicorn's access line: the path is an argument
            record.args = tuple(_redacted(a) for a in record.args)
        return True


def _redacted(arg: object) -> object:
    if arg is None or isinstance(arg, int | float):
        return arg  # for %d and %f
    # Anything else as its text: a WebSocket frame (websockets at debug) holds its payload.
    return redact(arg if isinstance(arg, str) else str(arg))


def keep_secrets_out() -> None:
    """Put one `Redact` on every handler of the loggers the hub and uvicorn write to (once)."""
    handlers = [h for name in WATCHED for h in logging.getLogger(name).handlers]
    if any(isinstance(f, Redact) for h in handlers for f in h.filters):
        return
    redacting = Redact()
    for handler in handlers:
        handler.addFilter(redacting)
