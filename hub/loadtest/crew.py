from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import resource
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from types import TracebackType
from typing import Any

from hub.loadtest.clients import Api
from hub.loadtest.stats import Tally

POLL = 0.01
SPAWN = multiprocessing.get_context("spawn")  # never fork a process that has threads or a loop


class WorkerFailed(Exception):
    """A load process raised or died; the message carries its traceback."""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True)
class Signals:
    """What the coordinator and its load processes share: a progress counter and a phase
    per process, when to go, and whether to stop."""

    progress: SynchronizedArray[int]
    phases: SynchronizedArray[int]
    go_at: Synchronized[float]
    stop: Any  # multiprocessing.Event

    @classmethod
    def make(cls, procs: int) -> Signals:
        return cls(
            SPAWN.Array("q", procs, lock=False),
            SPAWN.Array("q", procs, lock=False),
            SPAWN.Value("d", 0.0, lock=False),
            SPAWN.Event(),
        )


class Context:
    """A load process's view: its index, the REST API, its tally and the shared signals."""

    def __init__(self, index: int, procs: int, url: str, api: Api, signals: Signals) -> None:
        self.index, self.procs, self.url, self.api = index, procs, url, api
        self.tally = Tally()
        self._signals = signals

    def done(self, n: int = 1) -> None:
        self._signals.progress[self.index] += n

    def reached(self, phase: int = 1) -> None:
        """Tell the coordinator this process got to `phase` (1: ready to go)."""
        self._signals.phases[self.index] = phase

    async def go(self) -> float:
        """Wait for the coordinator's go; returns the agreed wall-clock start."""
        while not self._signals.go_at.value:  # noqa: ASYNC110 (shared memory, no Event)
            await asyncio.sleep(POLL)
        await asyncio.sleep(max(0.0, self._signals.go_at.value - time.time()))
        return self._signals.go_at.value

    @property
    def stopping(self) -> bool:
        return bool(self._signals.stop.is_set())

    async def stopped(self, deadline: float | None = None) -> None:
        """Wait until the coordinator says stop (or `deadline`, a wall-clock time, passes)."""
        while not self.stopping and (deadline is None or time.time() < deadline):  # noqa: ASYNC110
            await asyncio.sleep(POLL * 5)


Client = Callable[[Context, Any], Awaitable[None]]


def _work(
    index: int, procs: int, url: str, client: Client, share: Any, signals: Signals, out: Any
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one descriptor per connection

    async def main() -> Tally:
        async with Api.open(url) as api:
            context = Context(index, procs, url, api, signals)
            await client(context, share)
            return context.tally

    began = cpu_seconds()
    try:
        tally = asyncio.run(main())
        tally.cpu = cpu_seconds() - began
        out.put((index, tally, None))
    except BaseException:
        out.put((index, None, traceback.format_exc()))


class Crew:
    """`procs` load processes, each running `client(context, share)` in its own loop."""

    def __init__(self, url: str, client: Client, shares: list[Any]) -> None:
        self.procs = len(shares)
        self.signals = Signals.make(self.procs)
        self._out = SPAWN.Queue()
        self._processes = [
            SPAWN.Process(
                target=_work,
                args=(n, self.procs, url, client, share, self.signals, self._out),
                daemon=True,
            )
            for n, share in enumerate(shares)
        ]
        self._tallies: dict[int, Tally] = {}

    async def __aenter__(self) -> Crew:
        for process in self._processes:
            process.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        deadline = time.monotonic() + 10
        for process in self._processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join()

    @property
    def done(self) -> int:
        return sum(self.signals.progress[:])

    @property
    def finished(self) -> bool:
        self._drain()
        return len(self._tallies) == self.procs

    async def phase(self, phase: int = 1, limit: float = 120) -> None:
        """Wait until every process reached `phase` or finished."""
        deadline = time.monotonic() + limit
        while not all(p >= phase for p in self.signals.phases[:]) and not self.finished:
            if time.monotonic() > deadline:
                raise WorkerFailed(f"load processes did not reach phase {phase} in {limit} s")
            await asyncio.sleep(POLL)

    def go(self, delay: float = 0.2) -> float:
        """Start every process at the same wall-clock moment, `delay` from now."""
        self.signals.go_at.value = time.time() + delay
        return self.signals.go_at.value

    def stop(self) -> None:
        self.signals.stop.set()

    async def wait(self, total: int | None = None, limit: float = 300) -> None:
        """Until every process finished (or `total` operations are done); stop at `limit`."""
        deadline = time.monotonic() + limit
        while not self.finished and (total is None or self.done < total):
            if time.monotonic() > deadline:
                self.stop()
                return
            await asyncio.sleep(POLL * 5)

    async def results(self, limit: float = 120) -> Tally:
        """Every process's tally, merged (after `stop` unless they end by themselves)."""
        deadline = time.monotonic() + limit
        while not self.finished:
            dead = [
                p
                for n, p in enumerate(self._processes)
                if n not in self._tallies and not p.is_alive()
            ]
            if dead and not self.finished:
                raise WorkerFailed(f"a load process died with exit code {dead[0].exitcode}")
            if time.monotonic() > deadline:
                raise WorkerFailed(f"load processes did not report within {limit} s")
            await asyncio.sleep(POLL * 5)
        merged = Tally()
        for _, tally in sorted(self._tallies.items()):
            merged.merge(tally)
        return merged

    def _drain(self) -> None:
        while True:
            try:
                index, tally, error = self._out.get_nowait()
            except queue.Empty:
                return
            if error is not None:
                raise WorkerFailed(f"load process {index} failed:\n{error}")
            self._tallies[index] = tally
            with contextlib.suppress(Exception):
                self._processes[index].join(timeout=0)
