"""The garbage collector of a serving process, tuned for a heap of many long-lived objects.

CPython's cycle collector (thresholds 700, 10, 10) runs a young collection every 700 net
allocations and, each time the heap has grown by a quarter, a full one through every object
there is. A process holding thousands of sessions keeps hundreds of thousands of objects
that no cycle will ever free, and a storm of viewers connecting grows the heap fast: py-spy
of a worker under `storm -c 5000` found 47% of it in the collector, eight full collections
of 0.19 s each per worker. Nearly everything a request makes is freed by reference counting
alone; the collector finds little (a few hundred objects per full collection).

So `serve` freezes what the process built before it serves (modules, the app, its
mappers and schemas: out of every later collection, as `gc.freeze` is meant for) and
collects less often (HUB_GC_THRESHOLDS, default 10000,20,100): a young collection every
10,000 allocations (a few milliseconds), a full one only after 100 middle ones and a quarter's
growth. Measured per viewer of `storm -c 5000` (hub CPU, 2 workers): 1.40-1.67 ms with
Python's thresholds, 1.03-1.14 ms tuned (alternate runs). `HUB_GC_THRESHOLDS=700,10,10`
restores Python's."""

from __future__ import annotations

import gc


def tune(thresholds: tuple[int, int, int]) -> None:
    """Collect now, freeze everything alive (never collected again: what the process built
    to serve), and collect from here on at `thresholds`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
