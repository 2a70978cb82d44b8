"""RecentOutcomes: a bounded memory of recently settled tasks. Pure: no I/O, no clock.

The executor remembers each settled ``(task id, retry sequence)`` with what it needs to answer a
copy of that task (the encoded reply, if one was sent). A redelivered copy — the broker did not get
an ack in time, a producer batch was redelivered whole — is then acked without running again, and
a client that re-dispatches the same task id gets the reply again.

Two generations of plain dicts, swapped when the newer one is full: every operation is O(1) with
no per-entry bookkeeping, a key is remembered for at least ``capacity // 2`` later additions, and
at most about ``capacity`` keys and ``max_bytes`` of values are held at any time.
"""

from __future__ import annotations

from collections.abc import Container, Hashable, Iterable
from itertools import repeat
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RecentOutcomes(Generic[K, V]):
    __slots__ = ("_bytes", "_current", "_half", "_half_bytes", "_previous")

    def __init__(self, capacity: int, max_bytes: int) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2, got {capacity}")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self._half = capacity // 2
        self._half_bytes = max_bytes // 2
        self._current: dict[K, V] = {}
        self._previous: dict[K, V] = {}
        self._bytes = 0  # value bytes held by the current generation

    def add(self, key: K, value: V, size: int = 0) -> None:
        """Remember ``key`` with ``value``; ``size`` is what the value weighs against ``max_bytes``
        (a value heavier than half of it should not be stored: pass a lighter one)."""
        current = self._current
        current[key] = value
        self._bytes += size
        if len(current) >= self._half or self._bytes > self._half_bytes:
            self._previous = current
            self._current = {}
            self._bytes = 0

    def add_many(self, keys: Iterable[K], value: V) -> None:
        """Remember every key of ``keys`` with the same (weightless) ``value``: one C-level update
        for a whole batch. A generation may then exceed ``capacity // 2`` by one batch."""
        current = self._current
        current.update(zip(keys, repeat(value)))  # no dict in between (dict.fromkeys)
        if len(current) >= self._half:
            self._previous = current
            self._current = {}
            self._bytes = 0

    def generations(self) -> tuple[Container[K], Container[K]]:
        """The two generations, for membership tests of many keys in a row (``k in a or k in b``)
        without a method call each. Valid until the next ``add``."""
        return self._current, self._previous

    def isdisjoint(self, keys: set[K]) -> bool:
        """Whether none of ``keys`` is remembered (C-level: a run of fresh keys at once)."""
        return self._current.keys().isdisjoint(keys) and self._previous.keys().isdisjoint(keys)

    def get(self, key: K, default: V | None = None) -> V | None:
        value = self._current.get(key, default)
        if value is default:
            value = self._previous.get(key, default)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._current or key in self._previous

    def discard(self, key: K) -> None:
        self._current.pop(key, None)
        self._previous.pop(key, None)

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)
