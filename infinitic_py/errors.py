"""Every exception infinitic-py raises on purpose, in one hierarchy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infinitic_py.transport.base import TransportError


class InfiniticError(Exception):
    """Base class of infinitic-py's own errors."""


class ServiceDefinitionError(InfiniticError):
    """A service class, task method or batch twin is declared wrongly (checked at worker start)."""


class ConfigError(InfiniticError):
    """A worker configuration is invalid. ``str()`` is one readable line naming the key."""


class TaskFailed(InfiniticError):
    """A task ended in failure: raised by ``Deferred.result()``.

    ``error_type`` is the remote exception's class name, ``message`` its text and ``retry_index``
    how many retries had been made when it failed for good.
    """

    def __init__(
        self,
        task_id: str,
        error_type: str,
        message: str,
        retry_index: int = 0,
        traceback: str | None = None,
        service: str | None = None,
        method: str | None = None,
    ) -> None:
        super().__init__(f"task {task_id} failed after {retry_index} retries: {error_type}: {message}")
        self.task_id = task_id
        self.error_type = error_type
        self.message = message
        self.retry_index = retry_index
        self.traceback = traceback
        self.service = service
        self.method = method

    def __reduce__(self) -> tuple[type[TaskFailed], tuple[object, ...]]:
        return (
            TaskFailed,
            (self.task_id, self.error_type, self.message, self.retry_index, self.traceback,
             self.service, self.method),
        )


class MissingBatchResult(InfiniticError):
    """The error of a task whose id the batch method did not return."""


class ResultTypeError(InfiniticError, TypeError):
    """The error of a task whose output does not fit its method's declared result type (or
    cannot be encoded): "Svc.echo returned str for task 3f..: expected int". The task fails
    alone, through its retry policy, then a dead letter (``infinitic_py.worker.results``)."""


class TaskTimeout(InfiniticError):
    """The error of a task whose handler (or whole batch) exceeded its timeout."""


class DecodeError(InfiniticError):
    """A message or a task's arguments could not be decoded (never retried)."""


class ResultTimeout(InfiniticError, TimeoutError):
    """``Deferred.result(timeout=...)`` ran out of time; the task may still complete later."""


class ForcedShutdown(InfiniticError):
    """A second SIGTERM / SIGINT during the drain: held messages were nacked, the worker stops
    without waiting for running handlers."""


class ClientClosed(InfiniticError):
    """The client was closed while a result was awaited or a dispatch was attempted."""


class DispatchFailed(InfiniticError, TransportError):
    """A dispatch (``send``, ``many``) failed at the broker. ``sent``: the task ids the broker
    confirmed (they exist and will run: ``deferreds`` are their Deferreds, still awaiting
    results); ``unsent``: every other task id (not published, or in flight and unconfirmed
    when the send failed). An atomic ``many()`` never leaves a part behind: ``sent`` is empty."""

    def __init__(self, message: str, sent: Sequence[str], unsent: Sequence[str],
                 deferreds: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.sent: tuple[str, ...] = tuple(sent)
        self.unsent: tuple[str, ...] = tuple(unsent)
        self.deferreds: list[Any] = list(deferreds)
