"""Priority bands inside one executor: which waiting unit takes the next concurrency slot.

``BandPicker`` is the pure rule; ``PrioritySlots`` the asyncio slot pool that applies it (it
replaces a plain semaphore: a unit of a higher band that waits for a slot starts before one of a
lower band, whatever their arrival order).

The rule (bounded starvation): a freed slot goes to the highest band with a waiting unit, except
that a band with waiting work which has seen ``k`` units of higher bands start since it last
started one goes first (the lowest such band). So, with ``B`` bands below it, a band with
waiting work starts a unit at least once in every ``k + B`` starts: under a steady high stream,
low work still gets at least one slot in ``k + 1`` (``k`` = ``DEFAULT_K`` = 8).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager

from infinitic_py.priority import Band

DEFAULT_K = 8


class BandPicker:
    """Pure: which band starts next, given the bands with waiting work."""

    def __init__(self, k: int = DEFAULT_K) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self._passed: dict[Band, int] = {}  # higher-band starts seen while waiting

    def pick(self, waiting: Collection[Band]) -> Band:
        """The band to start now (``waiting`` is not empty). Updates the starvation counts."""
        owed = [b for b in waiting if self._passed.get(b, 0) >= self.k]
        chosen = min(owed) if owed else max(waiting)
        for band in waiting:
            if band < chosen:
                self._passed[band] = self._passed.get(band, 0) + 1
        self._passed[chosen] = 0
        return chosen


class PrioritySlots:
    """``concurrency`` slots; waiters queue per band (FIFO within a band)."""

    def __init__(self, slots: int, k: int = DEFAULT_K) -> None:
        self._free = slots
        self._picker = BandPicker(k)
        self._waiters: dict[Band, collections.deque[asyncio.Future[None]]] = {
            band: collections.deque() for band in Band}
        self.started: dict[Band, int] = dict.fromkeys(Band, 0)  # units started per band

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
            self.started[band] += 1
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
        self.started[band] += 1

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
