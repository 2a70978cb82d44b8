"""ExecutorSettings: what one ServiceExecutor is told by its worker (settings flow one way:
YAML/env -> config -> Worker -> ExecutorSettings -> executor)."""

from __future__ import annotations

from dataclasses import dataclass, field

from infinitic_py.batching import check_timeout
from infinitic_py.retry import RetryPolicy, check_retry
from infinitic_py.transport.base import ConsumerSettings


@dataclass(frozen=True)
class ExecutorSettings:
    tenant: str = "public"
    namespace: str = "default"
    concurrency: int = 10
    retry: RetryPolicy | None = None  # service default; a method's own policy wins
    timeout: float | None = None  # service default; a method's own timeout wins
    max_buffered_messages: int = 10_000
    max_buffered_bytes: int = 256 * 1024 * 1024  # payload bytes held (received, not settled)
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)
    worker_name: str = "worker"
    # Sync handlers left running past their timeout whose threads are replaced; beyond that the
    # service is not ready. None: max(8, 4 x concurrency).
    max_hung_handlers: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise TypeError(f"concurrency must be an int >= 1, got {self.concurrency!r}")
        check_retry(self.retry)
        check_timeout(self.timeout)
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_buffered_messages < 1:
            raise ValueError("max_buffered_messages must be >= 1")
        if self.max_buffered_bytes < 1:
            raise ValueError("max_buffered_bytes must be >= 1")
        if self.max_hung_handlers is not None and self.max_hung_handlers < 0:
            raise ValueError("max_hung_handlers must be >= 0")

    @property
    def hung_handlers_cap(self) -> int:
        """``max_hung_handlers``, its default resolved."""
        if self.max_hung_handlers is None:
            return max(8, 4 * self.concurrency)
        return self.max_hung_handlers
