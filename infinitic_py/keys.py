"""Routing keys: which Pulsar key a task is published with (pure, no I/O).

A Key_Shared subscription gives each key's messages to one consumer, so every task of a batch
key reaches the same worker and its batches fill. A key that carries most of the traffic (a hot
tenant) would then pin one worker while the others idle. ``key_spread`` trades some batch fill
for spread: a batch key is published under ``spread`` sub-keys (``"<key>#<i>"``), so its tasks
go to up to ``spread`` workers. The worker still groups by the batch key itself (task meta): the
sub-key only changes the message's partition / ordering key, never what is batched together.

The cost is known in advance: each of the ``spread`` workers sees ``1/spread`` of the key's rate,
so a batch that filled within ``max_seconds`` at rate ``r`` now holds about ``r * max_seconds /
spread`` tasks when the timer flushes it (a full batch still flushes at ``max_messages``).

The sub-key index is a hash of the task id, so the same task (a re-dispatch with the same
``task_id``, or a retry the worker republishes with the message's own key) keeps its sub-key.

``key_rotation`` (``KeyRotation``) spreads keys over time instead of over sub-keys at once: a
client publishes a run of ``every`` consecutive tasks of a batch key under one routing key
(``"<key>#r<n>"``), then moves to the next (``n + 1``, hashed elsewhere on the ring). A run is
one batch's worth when ``every`` is the method's ``max_messages``: it reaches one worker and
fills one batch there, and the runs of every key are spread over the whole fleet (a Kafka-like
"sticky partitioner", per key). Each worker's share is then the sum of many runs' draws rather
than of a few keys' draws, so a fleet evens out within a few hundred runs, and a hot key spreads
too, at no cost in fill as long as a run arrives within ``max_seconds``. What it gives up: the
order of one key's tasks across runs (two runs may run at once on two workers), and a re-dispatch
of the same task id lands wherever its key's current run goes.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Final

from infinitic_py.wire import key_text

__all__ = [
    "MAX_KEY_ROTATION",
    "MAX_KEY_SPREAD",
    "SUB_KEY_SEPARATOR",
    "KeyRotation",
    "check_key_rotation",
    "check_key_spread",
    "routing_key",
    "spread_for",
]

SUB_KEY_SEPARATOR: Final = "#"
MAX_KEY_SPREAD: Final = 1024
MAX_KEY_ROTATION: Final = 1_000_000
_ROTATED_KEYS: Final = 10_000  # keys whose run a client remembers (least recently used go)


def check_key_spread(spread: int | Mapping[str, int]) -> dict[str, int] | int:
    """Validate a ``key_spread`` option: an int for every service, or ``{service: int}``.
    Raises ``ValueError`` with a one-line message."""
    if isinstance(spread, Mapping):
        checked: dict[str, int] = {}
        for service, value in spread.items():
            checked[str(service)] = _check_one(value, f"key_spread[{service!r}]")
        return checked
    return _check_one(spread, "key_spread")


def check_key_rotation(every: int | Mapping[str, int]) -> dict[str, int] | int:
    """Validate a ``key_rotation`` option (0: off), like ``check_key_spread``."""
    if isinstance(every, Mapping):
        return {str(service): _check_one(value, f"key_rotation[{service!r}]", 0,
                                         MAX_KEY_ROTATION)
                for service, value in every.items()}
    return _check_one(every, "key_rotation", 0, MAX_KEY_ROTATION)


def _check_one(value: object, what: str, low: int = 1, high: int = MAX_KEY_SPREAD) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an int from {low} to {high}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be from {low} to {high}, got {value}")
    return value


def spread_for(spread: int | Mapping[str, int], service: str, default: int = 1) -> int:
    """The spread (or rotation) of one service (``default`` for one a mapping does not name)."""
    if isinstance(spread, Mapping):
        return spread.get(service, default)
    return spread


class KeyRotation:
    """Pure: the routing key of each task of a run of ``every`` tasks of one key (per service),
    then of the next run (see the module docstring). Counts the tasks of the keys it saw last."""

    def __init__(self, max_keys: int = _ROTATED_KEYS) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._max_keys = max_keys

    def key_for(self, service: str, key: str, every: int) -> str:
        """The routing key of the next task of ``key`` on ``service``."""
        counts = self._counts
        seen = counts.pop((service, key), 0)  # re-inserted: the dict keeps recency order
        counts[(service, key)] = seen + 1
        if len(counts) > self._max_keys:
            del counts[next(iter(counts))]
        return f"{key}{SUB_KEY_SEPARATOR}r{seen // every}"


def routing_key(batch_key: str | bytes | None, task_id: str, spread: int = 1) -> str | None:
    """The partition key of a task: ``None`` without a batch key, the batch key itself (bytes as
    hex) with a spread of 1, else one of its ``spread`` sub-keys chosen by the task id."""
    key = key_text(batch_key)
    if key is None or spread <= 1:
        return key
    index = zlib.crc32(task_id.encode()) % spread
    return f"{key}{SUB_KEY_SEPARATOR}{index}"
