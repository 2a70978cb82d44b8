"""Pre-bound metric children per method (``labels()`` is too slow for the hot path), and the
per-service counters the executor bumps."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from infinitic_py.observability import Metrics
from infinitic_py.worker.accumulator import Batch, FlushReason
from infinitic_py.worker.outcomes import Plan


class ServiceInstruments:
    """One service's metrics, and the log lines that go with what a unit's plan published."""

    def __init__(self, metrics: Metrics, service: str, methods: Iterable[str]) -> None:
        self._metrics = metrics
        self.service = service
        self.methods = {name: Instruments(metrics, service, name) for name in methods}

    def duplicate(self, action: str) -> None:
        self._metrics.duplicates.labels(service=self.service, action=action).inc()

    def record(self, plan: Plan, method: str, log: Any) -> None:
        """Count (and log) what a unit's published plan did."""
        inst = self.methods[method]
        if plan.completed:
            inst.completed.inc(plan.completed)
        for error_type in plan.failed:
            self._metrics.tasks_failed.labels(service=self.service, method=method,
                                              error_type=error_type).inc()
        for retry in plan.retries:
            inst.retried.inc()
            log.info("task.retry_scheduled", task_id=retry.task.task_id,
                     retry_index=retry.task.retry_index + 1, delay_s=round(retry.delay, 3),
                     error_type=type(retry.error).__name__, error=str(retry.error))
        self.record_dead(plan, log)

    def record_dead(self, plan: Plan, log: Any) -> None:
        for dead in plan.dead:
            # The method label only ever names one of the service's methods: an unknown method,
            # or whatever an undecodable message's properties say, comes from the sender and
            # would add a series per distinct name (unbounded); the log line keeps the name.
            label = dead.method if dead.method in self.methods else ""
            self._metrics.tasks_dead_lettered.labels(service=self.service, method=label,
                                                     reason=dead.reason).inc()
            if dead.reason == "undecodable":
                self._metrics.decode_errors.labels(service=self.service).inc()
                log.warning("message.undecodable", error=str(dead.error),
                            task_id=dead.task_id, method=dead.method)
                continue
            log.warning("task.dead_lettered", task_id=dead.task_id, method=dead.method,
                        reason=dead.reason, error_type=type(dead.error).__name__,
                        error=str(dead.error), retry_index=dead.retry_index)


class Instruments:
    __slots__ = (
        "_flush",
        "_labels",
        "_metrics",
        "accumulator_wait",
        "batch_fill",
        "batch_size",
        "completed",
        "contract_errors",
        "handler_duration",
        "received",
        "received_pending",
        "retried",
    )

    def __init__(self, metrics: Metrics, service: str, method: str) -> None:
        self._metrics = metrics
        self._labels = {"service": service, "method": method}
        self._flush: dict[FlushReason, Any] = {}
        self.received = metrics.tasks_received.labels(service=service, method=method)
        self.received_pending = 0  # received since the last update of ``received``
        self.completed = metrics.tasks_completed.labels(service=service, method=method)
        self.retried = metrics.tasks_retried.labels(service=service, method=method)
        self.batch_size = metrics.batch_size.labels(service=service, method=method)
        self.batch_fill = metrics.batch_fill_ratio.labels(service=service, method=method)
        self.accumulator_wait = metrics.accumulator_wait_seconds.labels(
            service=service, method=method
        )
        self.handler_duration = metrics.handler_duration_seconds.labels(
            service=service, method=method
        )
        self.contract_errors = metrics.contract_errors.labels(service=service, method=method)

    def batch_flushed(self, batch: Batch[Any, Any], now: float) -> None:
        size = len(batch.items)
        self.batch_size.observe(size)
        self.batch_fill.observe(size / batch.limits.max_messages)
        self.flushed(batch.reason).inc()
        self.accumulator_wait.observe(now - batch.opened_at)  # the longest wait

    def flushed(self, reason: FlushReason) -> Any:
        counter = self._flush.get(reason)
        if counter is None:
            counter = self._flush[reason] = self._metrics.batch_flush.labels(
                **self._labels, reason=reason.value)
        return counter
