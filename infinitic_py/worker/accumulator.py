"""BatchAccumulator: groups items per key and decides when a group is flushed. Pure: no I/O, no
asyncio; the caller passes the current time (``now``) so tests control the clock.

A group flushes when it holds ``max_messages`` items (``add`` returns it), when ``max_seconds`` have
passed since its *first* item (``flush_due``), when the owner shuts down (``flush_all``), or when the
owner is at its buffer cap (``flush_oldest``: the group due first, reason ``memory``). The cap
itself is the owner's (the worker's ledger): the accumulator only holds groups. Each ``add``
carries the group's limits (the route knows them): nothing is asked back of the owner.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from infinitic_py.batching import BatchLimits, FlushReason

__all__ = ["Batch", "BatchAccumulator", "BatchLimits", "FlushReason"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(slots=True)
class Batch(Generic[K, T]):
    key: K
    items: list[T]
    opened_at: float  # time of the first item
    reason: FlushReason
    limits: BatchLimits


@dataclass(slots=True)
class _Group(Generic[T]):
    items: list[T]
    opened_at: float
    deadline: float
    generation: int
    limits: BatchLimits


@dataclass
class BatchAccumulator(Generic[K, T]):
    """Open groups keyed by ``K`` (the executor uses ``(method, batch_key)``)."""

    _groups: dict[K, _Group[T]] = field(default_factory=dict, init=False)
    # (deadline, generation, key): lazily pruned; generation tells a stale entry from a live one.
    _deadlines: list[tuple[float, int, K]] = field(default_factory=list, init=False)
    _generation: int = field(default=0, init=False)
    _buffered: int = field(default=0, init=False)

    @property
    def buffered(self) -> int:
        """Items held in open groups."""
        return self._buffered

    @property
    def open_groups(self) -> int:
        return len(self._groups)

    def __contains__(self, key: object) -> bool:
        """Whether a group is open for ``key``."""
        return key in self._groups

    def add(self, key: K, item: T, now: float, limits: BatchLimits) -> Sequence[Batch[K, T]]:
        """Add one item (``limits``: its group's, used when the group opens); returns the batch
        this addition flushes by size, if any."""
        group = self._groups.get(key)
        if group is None:
            group = self._open(key, now, limits)
        items = group.items
        items.append(item)
        self._buffered += 1
        if len(items) < group.limits.max_messages:
            return ()  # the hot path: no list to allocate
        return (self._pop(key, FlushReason.SIZE),)

    def add_many(self, key: K, items: Sequence[T], now: float,
                 limits: BatchLimits) -> list[Batch[K, T]]:
        """Add ``items`` in order, as that many ``add`` calls would (a run of one group at
        once: the receive hot path); returns the batches flushed by size."""
        flushed: list[Batch[K, T]] = []
        start, count = 0, len(items)
        while start < count:
            group = self._groups.get(key)
            if group is None:
                group = self._open(key, now, limits)
            held = group.items
            most = group.limits.max_messages
            end = min(count, start + max(1, most - len(held)))
            held.extend(items[start:end])
            self._buffered += end - start
            start = end
            if len(held) >= most:
                flushed.append(self._pop(key, FlushReason.SIZE))
        return flushed

    def _open(self, key: K, now: float, limits: BatchLimits) -> _Group[T]:
        """A new group for ``key``, due ``max_seconds`` after ``now``."""
        self._generation += 1
        group: _Group[T] = _Group([], now, now + limits.max_seconds, self._generation, limits)
        self._groups[key] = group
        heapq.heappush(self._deadlines, (group.deadline, group.generation, key))
        return group

    def flush_oldest(self, reason: FlushReason = FlushReason.MEMORY) -> list[Batch[K, T]]:
        """Flush the group due first (the owner is at its buffer cap), if any is open."""
        oldest = self._oldest_key()
        return [] if oldest is None else [self._pop(oldest, reason)]

    def next_deadline(self) -> float | None:
        """When the earliest open group is due, or None if there is none."""
        self._prune()
        return self._deadlines[0][0] if self._deadlines else None

    def flush_due(self, now: float) -> list[Batch[K, T]]:
        """Flush every group whose deadline is at or before ``now`` (reason ``time``)."""
        flushed: list[Batch[K, T]] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, generation, key = heapq.heappop(self._deadlines)
            group = self._groups.get(key)
            if group is not None and group.generation == generation:
                flushed.append(self._pop(key, FlushReason.TIME))
        return flushed

    def flush_all(self, reason: FlushReason = FlushReason.SHUTDOWN) -> list[Batch[K, T]]:
        """Flush every open group, oldest first."""
        keys = sorted(self._groups, key=lambda k: self._groups[k].opened_at)
        flushed = [self._pop(k, reason) for k in keys]
        self._deadlines.clear()
        return flushed

    def _oldest_key(self) -> K | None:
        self._prune()
        return self._deadlines[0][2] if self._deadlines else None

    def _prune(self) -> None:
        while self._deadlines:
            _, generation, key = self._deadlines[0]
            group = self._groups.get(key)
            if group is not None and group.generation == generation:
                return
            heapq.heappop(self._deadlines)

    def _pop(self, key: K, reason: FlushReason) -> Batch[K, T]:
        group = self._groups.pop(key)
        self._buffered -= len(group.items)
        return Batch(key, group.items, group.opened_at, reason, group.limits)
