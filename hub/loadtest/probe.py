from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from hub.loadtest.clients import Api

CPU = "process_cpu_seconds_total"
RSS = "process_resident_memory_bytes"
SESSIONS = "hub_ws_sessions"


@dataclass(frozen=True, slots=True)
class Sample:
    """A server's CPU seconds, resident memory and open sessions at one moment, and where
    they were read (`/metrics`, or psutil on the processes listening on its port)."""

    at: float
    cpu: float | None
    rss: float | None
    sessions: float | None
    source: str


def _metrics(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (CPU, RSS, SESSIONS):  # summed: one sample per worker, if any
                found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return all(
            ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None)
        )
    except (OSError, ValueError):
        return False


def listening(url: str) -> list[int]:
    """The processes of this machine listening on `url`'s port (with `serve --workers`, the
    supervisor and every worker); none for a remote hub or without psutil."""
    if not _is_local(url):
        return []
    try:
        import psutil
    except ImportError:
        return []
    port = urlsplit(url).port or 80
    pids = []
    for process in psutil.process_iter():
        try:
            sockets = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(s.status == psutil.CONN_LISTEN and s.laddr.port == port for s in sockets):
            pids.append(process.pid)
    return sorted(pids)


def measure(pids: Iterable[int]) -> tuple[float, float] | None:
    """CPU seconds and resident bytes summed over `pids` (psutil); None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    cpu = rss = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                times = process.cpu_times()
                cpu += times.user + times.system
                rss += process.memory_info().rss
        except psutil.Error:
            continue
    return cpu, rss


async def scrape(api: Api, pids: list[int]) -> Sample:
    """The hub's process CPU and memory from its `/metrics`; from psutil on `pids` for what
    `/metrics` does not carry (the process collector is not registered, or a local hub)."""
    text = await api.text("/metrics")
    found = _metrics(text) if text else {}
    cpu, rss, source = found.get(CPU), found.get(RSS), "/metrics"
    if (cpu is None or rss is None) and pids and (measured := measure(pids)) is not None:
        cpu, rss = measured
        source = f"psutil on pid {','.join(map(str, pids))}"
    elif cpu is None:
        source = "unavailable"
    return Sample(time.time(), cpu, rss, found.get(SESSIONS), source)


def local(pids: list[int]) -> Sample:
    """A process of ours (a ceiling server), read with psutil."""
    measured = measure(pids) or (None, None)
    return Sample(time.time(), measured[0], measured[1], None, "psutil")
