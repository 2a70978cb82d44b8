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
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Final

from infinitic_py.wire import key_text

__all__ = ["MAX_KEY_SPREAD", "SUB_KEY_SEPARATOR", "check_key_spread", "routing_key", "spread_for"]

SUB_KEY_SEPARATOR: Final = "#"
MAX_KEY_SPREAD: Final = 1024


def check_key_spread(spread: int | Mapping[str, int]) -> dict[str, int] | int:
    """Validate a ``key_spread`` option: an int for every service, or ``{service: int}``.
    Raises ``ValueError`` with a one-line message."""
    if isinstance(spread, Mapping):
        checked: dict[str, int] = {}
        for service, value in spread.items():
            checked[str(service)] = _check_one(value, f"key_spread[{service!r}]")
        return checked
    return _check_one(spread, "key_spread")


def _check_one(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an int from 1 to {MAX_KEY_SPREAD}, got {value!r}")
    if not 1 <= value <= MAX_KEY_SPREAD:
        raise ValueError(f"{what} must be from 1 to {MAX_KEY_SPREAD}, got {value}")
    return value


def spread_for(spread: int | Mapping[str, int], service: str) -> int:
    """The spread of one service (1 for a service a mapping does not name)."""
    if isinstance(spread, Mapping):
        return spread.get(service, 1)
    return spread


def routing_key(batch_key: str | bytes | None, task_id: str, spread: int = 1) -> str | None:
    """The partition key of a task: ``None`` without a batch key, the batch key itself (bytes as
    hex) with a spread of 1, else one of its ``spread`` sub-keys chosen by the task id."""
    key = key_text(batch_key)
    if key is None or spread <= 1:
        return key
    index = zlib.crc32(task_id.encode()) % spread
    return f"{key}{SUB_KEY_SEPARATOR}{index}"
