"""ExecutorSettings: what one ServiceExecutor is told by its worker (settings flow one way:
YAML/env -> config -> Worker -> ExecutorSettings -> executor)."""

from __future__ import annotations

from dataclasses import dataclass, field

from infinitic_py.retry import RetryPolicy
from infinitic_py.transport.base import ConsumerSettings


@dataclass(frozen=True)
class ExecutorSettings:
    tenant: str = "public"
    namespace: str = "default"
    concurrency: int = 10
    retry: RetryPolicy | None = None  # service default; a method's own policy wins
    timeout: float | None = None  # service default; a method's own timeout wins
    max_buffered_messages: int = 10_000
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)
    worker_name: str = "worker"

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_buffered_messages < 1:
            raise ValueError("max_buffered_messages must be >= 1")
