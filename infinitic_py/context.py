"""TaskContext and the two ways to reach it: ``get_context(task_id)`` inside a batch method,
``current_context()`` inside a single task. Both work in async handlers and in sync handlers run in
the thread pool (the executor copies the contextvars into the worker thread)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import structlog


@dataclass(frozen=True)
class TaskContext:
    task_id: str
    service: str
    method: str
    batch_key: str | None  # bytes keys are shown as their hex; the raw value stays in meta
    meta: Mapping[str, Any]
    tags: tuple[str, ...]
    retry_index: int
    retry_sequence: int
    batch_id: str | None  # None for a single (non-batched) task
    worker_name: str
    redelivery_count: int = 0
    logger: Any = field(default=None, repr=False, compare=False)  # the batch's structlog logger
    # Shared by every task of a batch: a timeout cancels the whole call.
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def is_cancelled(self) -> bool:
        """True once the task (or its batch) timed out: a sync handler should stop working;
        its late result is discarded anyway."""
        return self.cancelled.is_set()

    @property
    def log(self) -> structlog.stdlib.BoundLogger:
        """A logger bound to this task (service, method, batch id, task id)."""
        base = self.logger or structlog.get_logger().bind(service=self.service, method=self.method)
        logger: structlog.stdlib.BoundLogger = base.bind(task_id=self.task_id)
        return logger


_batch_contexts: ContextVar[Mapping[str, TaskContext] | None] = ContextVar(
    "infinitic_batch_contexts", default=None
)
_task_context: ContextVar[TaskContext | None] = ContextVar("infinitic_task_context", default=None)


def get_context(task_id: str) -> TaskContext:
    """The context of one task of the batch being executed. Raises ``LookupError`` outside a
    batch method or for an id that is not in the batch."""
    contexts = _batch_contexts.get()
    if contexts is None:
        single = _task_context.get()
        if single is not None and single.task_id == task_id:
            return single
        if single is not None:  # it said "only inside a task or batch method": it was in one
            raise LookupError(f"task {task_id!r} is not the task being executed "
                              f"({single.task_id!r}): in a single task use current_context()")
        raise LookupError("get_context() is only available inside a task or batch method")
    try:
        return contexts[task_id]
    except KeyError:
        raise LookupError(f"task {task_id!r} is not part of the current batch") from None


def current_context() -> TaskContext:
    """The context of the single task being executed. Raises ``LookupError`` elsewhere
    (inside a batch method, use ``get_context(task_id)``)."""
    context = _task_context.get()
    if context is None:
        raise LookupError(
            "current_context() is only available inside a single task; in a batch method "
            "use get_context(task_id)"
        )
    return context


def batch_contexts() -> Mapping[str, TaskContext]:
    """Every task context of the current batch (empty outside a batch)."""
    return _batch_contexts.get() or {}


def set_batch_contexts(contexts: Mapping[str, TaskContext] | None) -> None:
    _batch_contexts.set(contexts)


def set_task_context(context: TaskContext | None) -> None:
    _task_context.set(context)
