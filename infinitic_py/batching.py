"""BatchLimits: when a group of batched tasks is flushed (shared by the service definitions, the
config and the worker's accumulator), and FlushReason: why one was."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["BatchLimits", "FlushReason"]


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
