"""Where messages go: the one small transport interface, email over SMTP (aiosmtplib) as its
first implementation, and file sinks: `.eml` files when no SMTP server is configured (the
embedded default) and text files standing in for an SMS provider, which a clinic plugs in
by writing one more `Transport`. No provider is bundled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message as Email
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from hub.errors import ConfigError

log = logging.getLogger("hub.mail")


@dataclass(frozen=True, slots=True)
class Text:
    """A short text message to a phone number."""

    to: str
    body: str
    reference: str  # the notification's id, for the file's name


Message = Email | Text


Outcome = Exception | None  # what went wrong with one message; None once it is delivered


class Transport(Protocol):
    async def send(self, messages: Sequence[Message], done: list[Outcome]) -> None:
        """Deliver a round's messages, appending to `done`, in order, each one's outcome as
        soon as it is known: None, or what went wrong with it (the sender tries that one
        again later, with back-off). What `done` holds when the call ends, or is cancelled
        partway (a process stopping), is what the sender records."""


class SmtpMail:
    """Email through an SMTP server: `smtp://[user:password@]host[:port][?starttls=true]`, or
    `smtps://` for TLS from the first byte."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError("HUB_SMTP_URL must look like smtp://host:port or smtps://host:port")
        query = parse_qs(parts.query)
        self._host = parts.hostname
        self._tls = parts.scheme == "smtps"
        self._port = parts.port or (465 if self._tls else 25)
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._starttls = query.get("starttls", ["false"])[0].lower() in ("1", "true", "yes")
        self._timeout = timeout

    async def send(self, messages: Sequence[Message], done: list[Outcome]) -> None:
        """The round over one connection (one per message had the server greet, and the
        client say EHLO and QUIT, for every letter). A message the server refuses (RSET
        follows) or the client cannot send (an address outside ASCII to a server without
        SMTPUTF8) fails alone; once the connection is gone the rest fail with it."""
        smtp = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._user,
            password=self._password,
            use_tls=self._tls,
            start_tls=self._starttls,
            timeout=self._timeout,
        )
        try:
            await smtp.connect()
        except Exception as exc:  # the server away or refusing us: every message later
            done += [exc] * len(messages)
            return
        try:
            for message in messages:
                if not smtp.is_connected:
                    done.append(aiosmtplib.SMTPServerDisconnected("connection lost"))
                    continue
                try:
                    await _send(smtp, message)
                except Exception as exc:
                    done.append(exc)
                    continue
                done.append(None)
        finally:
            if smtp.is_connected:
                with contextlib.suppress(Exception):
                    await smtp.quit()
            smtp.close()  # quit closes only on its 221


async def _send(smtp: aiosmtplib.SMTP, message: Message) -> None:
    # As `send_message` sends it, but flattened with the message's own policy (the letters'
    # writes short ASCII headers as they are), where aiosmtplib's flattening uses compat32's.
    if not isinstance(message, Email):
        raise TypeError("SMTP carries email")
    sender = parseaddr(message["From"] or "")[1]
    recipients = [address for _, address in getaddresses(message.get_all("To", []))]
    if not sender or not recipients:
        raise ValueError("a message needs a From and a To address")
    options = []
    if not (sender + "".join(recipients)).isascii():
        if smtp.is_ehlo_or_helo_needed:  # what the server offers is known after EHLO
            await smtp.ehlo()
        if not smtp.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported("an address outside ASCII needs SMTPUTF8")
        options.append("SMTPUTF8")
    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    await smtp.sendmail(sender, recipients, data, mail_options=options)


class Files:
    """Each message as a file in a folder (`.eml` for email, `.txt` for a text message), and
    a log line saying where: how the embedded default shows what it would send."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    async def send(self, messages: Sequence[Message], done: list[Outcome]) -> None:
        await asyncio.to_thread(self._write_all, messages, done)  # one thread hop a round

    def _write_all(self, messages: Sequence[Message], done: list[Outcome]) -> None:
        for message in messages:
            try:
                self._write(message)
            except Exception as exc:  # the disk full, the folder not ours: later
                done.append(exc)
            else:
                done.append(None)

    def _write(self, message: Message) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        if isinstance(message, Email):
            name = f"{message['X-Hub-Notification'] or 'message'}.eml"
            data = message.as_bytes()
        else:
            name = f"{message.reference}.txt"
            data = f"To: {message.to}\n\n{message.body}\n".encode()
        path = self._folder / name
        path.write_bytes(data)
        log.info("message written to %s", path)  # the file, never who it is for
