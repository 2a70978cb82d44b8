"""ProducerCache: the producers of a client or an executor, keyed by topic (or service), at most
``capacity`` of them once idle. Topics come and go (a worker publishes to each client's reply
topic, a client dispatches to any service by name): beyond the capacity the least recently used
producers that no publish is using, and that are not pinned, are handed to ``evict`` to close.
With ``max_idle``, ``sweep()`` also evicts those unused for that many seconds: a reply producer
kept open on a client's response topic would recreate the topic (empty) when the client deletes
it at close, as pulsar-client reconnects a producer whose topic was deleted."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager

from infinitic_py.transport.base import Producer


class ProducerCache:
    def __init__(
        self,
        create: Callable[[str], Awaitable[Producer]],
        capacity: int,
        evict: Callable[[Producer], None],
        pinned: Collection[str] = (),
        *,
        max_idle: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._create = create
        self.capacity = capacity
        self._evict = evict
        self._pinned = pinned
        self._producers: OrderedDict[str, Producer] = OrderedDict()  # least recently used first
        self._users: dict[str, int] = {}  # publishes using a key right now
        self._used_at: dict[str, float] = {}
        self.max_idle = max_idle
        self._clock = clock
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._producers)

    @contextmanager
    def using(self, *keys: str) -> Iterator[None]:
        """Mark ``keys`` in use (before their producers are looked up: an idle producer may be
        evicted meanwhile); on exit, trim what went idle."""
        for key in keys:
            self._users[key] = self._users.get(key, 0) + 1
        try:
            yield
        finally:
            for key in keys:
                users = self._users[key] - 1
                if users:
                    self._users[key] = users
                else:
                    del self._users[key]
            self._trim()

    async def get(self, key: str) -> Producer:
        """The producer of ``key``, created (once, under a lock) if missing."""
        producer = self._producers.get(key)
        if producer is None:
            async with self._lock:
                producer = self._producers.get(key)
                if producer is None:
                    producer = await self._create(key)
                    self._producers[key] = producer
        self._producers.move_to_end(key)
        self._used_at[key] = self._clock()
        self._trim()
        return producer

    def sweep(self) -> int:
        """Evict the producers unused for ``max_idle`` seconds (not in use, not pinned); returns
        how many. The least recently used come first, so this stops at the first recent one."""
        if self.max_idle is None:
            return 0
        horizon = self._clock() - self.max_idle
        evicted = 0
        for key in list(self._producers):
            if key in self._users or key in self._pinned:
                continue
            if self._used_at.get(key, horizon) > horizon:
                break
            self._used_at.pop(key, None)
            self._evict(self._producers.pop(key))
            evicted += 1
        return evicted

    def drain(self) -> list[Producer]:
        """Every producer, removed from the cache (to close them all)."""
        producers = list(self._producers.values())
        self._producers.clear()
        return producers

    def _trim(self) -> None:
        excess = len(self._producers) - self.capacity
        if excess <= 0:
            return
        for key in list(self._producers):
            if excess <= 0:
                return
            if key in self._users or key in self._pinned:
                continue
            excess -= 1
            self._used_at.pop(key, None)
            self._evict(self._producers.pop(key))
