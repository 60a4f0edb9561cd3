from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

MARGIN = 600  # seconds: a kept token this close to expiring is signed in again


class TokenCache:
    """Sign-ins kept between runs (`--tokens FILE`): each load account's id and token, per
    hub URL, until shortly before the token expires. At the hub's argon2 cost a login is
    ~0.1-0.3 s of the hub's CPU, so a run of thousands of sessions otherwise spends minutes
    signing in before it starts."""

    def __init__(self, path: Path | None, url: str) -> None:
        self._path, self._url = path, url
        self._all: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            try:
                self._all = json.loads(path.read_text())
            except ValueError:
                self._all = {}
        self._mine = self._all.setdefault(url, {})
        self._changed = False

    def get(self, email: str) -> tuple[int, str] | None:
        entry = self._mine.get(email)
        if entry is None or entry["expires_at"] - MARGIN < time.time():
            return None
        return int(entry["id"]), str(entry["token"])

    def put(self, email: str, id_: int, token: str, expires_in: int) -> None:
        self._mine[email] = {"id": id_, "token": token, "expires_at": time.time() + expires_in}
        self._changed = True

    def forget(self, prefix: str) -> None:
        """Drop the kept tokens of this hub whose emails start with `prefix` (one role's:
        the hub's secret or its database changed since they were kept)."""
        for email in [e for e in self._mine if e.startswith(prefix)]:
            del self._mine[email]
        self._changed = True

    def save(self) -> None:
        if self._path is None or not self._changed:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._all))
        temporary.replace(self._path)
        self._changed = False
