"""Priority bands inside one executor: which waiting unit takes the next concurrency slot.

``BandPicker`` is the pure rule; ``PrioritySlots`` the asyncio slot pool that applies it (it
replaces a plain semaphore: a unit of a higher band that waits for a slot starts before one of a
lower band, whatever their arrival order).

The rule (bounded starvation): each band with waiting work counts the starts it was passed
over for. A freed slot goes to the band most passed over among those passed over ``k`` times or
more (the lower band on a tie); if none is, to the highest band with waiting work. So a band with
waiting work starts a unit within ``k + 2`` starts (``k`` passes make it owed; each of the two
other bands can then go first at most once, being reset by its start), and under a steady stream
of a higher band a lower one gets one slot in ``k + 1`` (``k`` = ``DEFAULT_K`` = 8).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Protocol

from infinitic_py.priority import Band

DEFAULT_K = 8


class BandPicker:
    """Pure: which band starts next, given the bands with waiting work."""

    def __init__(self, k: int = DEFAULT_K) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self._passed: dict[Band, int] = {}  # starts of other bands seen while waiting

    def pick(self, waiting: Collection[Band]) -> Band:
        """The band to start now (``waiting`` is not empty). Updates the starvation counts."""
        passed = self._passed
        owed = [b for b in waiting if passed.get(b, 0) >= self.k]
        chosen = (min(owed, key=lambda b: (-passed[b], b)) if owed else max(waiting))
        for band in waiting:
            if band != chosen:
                passed[band] = passed.get(band, 0) + 1
        passed[chosen] = 0
        return chosen


class _Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class PrioritySlots:
    """``concurrency`` slots; waiters queue per band (FIFO within a band). ``counters``: per
    band, a metric counted up at each start (``infinitic_units_started_total``)."""

    def __init__(self, slots: int, k: int = DEFAULT_K,
                 counters: Mapping[Band, _Counter] | None = None) -> None:
        self._free = slots
        self._picker = BandPicker(k)
        self._waiters: dict[Band, collections.deque[asyncio.Future[None]]] = {
            band: collections.deque() for band in Band}
        self.started: dict[Band, int] = dict.fromkeys(Band, 0)  # units started per band
        self._counters = counters or {}

    @asynccontextmanager
    async def take(self, band: Band) -> AsyncIterator[None]:
        await self._acquire(band)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, band: Band) -> None:
        if self._free > 0 and not any(self._waiters.values()):
            self._free -= 1
            self._count(band)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[band].append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # it was handed a slot as it got cancelled: pass it on
            elif future in self._waiters[band]:
                self._waiters[band].remove(future)
            raise
        self._count(band)

    def _count(self, band: Band) -> None:
        self.started[band] += 1
        counter = self._counters.get(band)
        if counter is not None:
            counter.inc()

    def _release(self) -> None:
        self._free += 1
        while self._free > 0:
            waiting = [band for band, queue in self._waiters.items() if queue]
            if not waiting:
                return
            band = self._picker.pick(waiting)
            future = self._waiters[band].popleft()
            if future.cancelled():
                continue
            self._free -= 1
            future.set_result(None)
