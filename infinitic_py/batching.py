"""BatchLimits: when a group of batched tasks is flushed (shared by the service definitions, the
config and the worker's accumulator), and FlushReason: why one was; ``check_timeout`` and
``as_batch_limits``: the time options given in code, checked when given."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["BatchLimits", "FlushReason", "as_batch_limits", "check_timeout"]


class FlushReason(enum.StrEnum):
    SIZE = "size"
    TIME = "time"
    SHUTDOWN = "shutdown"
    MEMORY = "memory"


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_messages: int
    max_seconds: float

    def __post_init__(self) -> None:
        if self.max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {self.max_messages}")
        if self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")


def as_batch_limits(method: str, value: Any) -> BatchLimits:
    """``add_service(batch={method: value})``: a BatchLimits or a (max_messages, max_seconds)
    pair (TypeError naming the method otherwise)."""
    if isinstance(value, BatchLimits):
        return value
    if isinstance(value, tuple | list) and len(value) == 2:
        return BatchLimits(*value)
    raise TypeError(f"batch[{method!r}] must be BatchLimits(max_messages, max_seconds) or a "
                    f"(max_messages, max_seconds) pair, got {value!r}")


def check_timeout(timeout: Any) -> float | None:
    """A task's (or a service's) timeout: None, or a finite number of seconds > 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds (or None), got {timeout!r}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a finite number of seconds > 0 (or None), got {timeout}")
    return float(timeout)
