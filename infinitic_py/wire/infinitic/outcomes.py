"""What a Python executor sends for an Infinitic task, built from the ``ExecuteTask`` (pure).

Per task, in order (as Infinitic's ``TaskExecutor`` does):

- ``started(task)`` -> ``TaskStartedEvent`` on ``task-events:<S>``, before the method runs;
- then exactly one of
  - ``completed(task, value)`` -> ``TaskCompletedEvent`` on ``task-events:<S>``;
  - ``failed(task, error)`` -> ``TaskFailedEvent`` on ``task-events:<S>`` (no retry left);
  - ``retry(task, error, delay)`` -> the next attempt (``ExecuteTask``, ``taskRetryIndex + 1``)
    on ``task-retry:<S>`` with ``deliver_after=delay`` (or ``task-executor:<S>`` when delay <= 0),
    THEN ``TaskRetriedEvent`` on ``task-events:<S>``.

``client_task`` builds the ``ExecuteTask`` a Python client sends to a (JVM) service, with a
``ClientRequester`` and ``clientWaiting=true`` so the event handler answers on ``response:<client>``.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from infinitic_py.wire import error_text, writable_text
from infinitic_py.wire.infinitic.envelopes import (
    INFINITIC_VERSION,
    ClientRequester,
    ExecuteTask,
    GenericException,
    SerializedData,
    TaskCompletedEvent,
    TaskEvent,
    TaskFailedEvent,
    TaskRetriedEvent,
    TaskStartedEvent,
    WorkerError,
    WorkflowRequester,
)


def uuid7() -> str:
    """A UUIDv7 string (time-ordered, as Infinitic's ``IdGenerator`` makes message ids)."""
    # random.getrandbits, not os.urandom + uuid.UUID: two of these per task (the ids need to be
    # unique, not secret; ``random`` reseeds in a forked child). One %-format writes the five
    # groups: 48 bits of milliseconds, the version 7 and 12 random bits, the variant 0b10 and
    # 62 random bits.
    ms = time.time_ns() // 1_000_000 & 0xFFFFFFFFFFFF
    rand = _bits(74)
    return "%08x-%04x-7%03x-%04x-%012x" % (  # noqa: UP031 (faster than an f-string here)
        ms >> 16, ms & 0xFFFF, rand >> 62, 0x8000 | (rand >> 48) & 0x3FFF,
        rand & 0xFFFFFFFFFFFF)


_bits = random.getrandbits


E = TypeVar("E", bound=TaskEvent)


def _event(kind: type[E], task: ExecuteTask, emitter_name: str, meta: Mapping[str, bytes] | None,
           **own: Any) -> E:
    """The ``kind`` event of ``task``: the fields every task event copies from it, and ``own``.
    ``meta``: the task meta after execution (tasks may change it), default unchanged."""
    if task.requester is None:  # only in messages from before Infinitic 0.13
        raise ValueError(f"task {task.task_id} has no requester: the JVM would not accept its events")
    return kind(
        version=INFINITIC_VERSION,
        message_id=uuid7(),
        service_name=task.task_name,
        method_name=task.method_name,
        task_id=task.task_id,
        emitter_name=emitter_name,
        task_retry_sequence=task.task_retry_sequence,
        task_retry_index=task.task_retry_index,
        requester=task.requester,
        client_waiting=task.client_waiting,
        task_tags=list(task.task_tags),
        task_meta=dict(task.task_meta if meta is None else meta),
        **own,
    )


def started(task: ExecuteTask, emitter_name: str) -> TaskStartedEvent:
    """(The dialect writes this one and ``completed`` straight from the task: ``events``.)"""
    return _event(TaskStartedEvent, task, emitter_name, None)


def completed(task: ExecuteTask, return_value: SerializedData, emitter_name: str,
              meta: Mapping[str, bytes] | None = None) -> TaskCompletedEvent:
    return _event(TaskCompletedEvent, task, emitter_name, meta, is_delegated=False,
                  return_value=return_value)


def failed(task: ExecuteTask, error: WorkerError, emitter_name: str,
           meta: Mapping[str, bytes] | None = None) -> TaskFailedEvent:
    return _event(TaskFailedEvent, task, emitter_name, meta, execution_error=error,
                  deferred_error=None)


def worker_error(
    task: ExecuteTask,
    error: BaseException,
    worker_name: str,
    seconds_before_retry: float | None = None,
    trace: str | None = None,
) -> WorkerError:
    """The ``WorkerError`` (Kotlin ``TaskFailure``) of a failed attempt of ``task``.

    The exception's name is its Python qualified name (``builtins.ValueError``,
    ``myapp.errors.PaymentRefused``): workflows see it as ``TaskFailedException.lastFailure``'s
    class name; its chain (``__cause__``/``__context__``) becomes ``GenericException.cause``.
    ``trace``: the formatted traceback if the caller has it (default: formatted here).
    """
    return WorkerError(
        worker_name=worker_name,
        retry_sequence=task.task_retry_sequence,
        retry_index=task.task_retry_index,
        seconds_before_retry=seconds_before_retry,
        stack_trace_to_string=writable_text(
            trace if trace is not None else "".join(traceback.format_exception(error))),
        exception=generic_exception(error),
        cause=task.last_error,
    )


def generic_exception(error: BaseException, _depth: int = 0) -> GenericException:
    cls = type(error)
    chained = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return GenericException(
        name=f"{cls.__module__}.{cls.__qualname__}",
        message=error_text(error) or None,
        serialized_custom_properties={},
        cause=generic_exception(chained, _depth + 1) if chained is not None and _depth < 8 else None,
    )


def retry(
    task: ExecuteTask,
    error: WorkerError,
    delay_seconds: float,
    emitter_name: str,
    meta: Mapping[str, bytes] | None = None,
) -> tuple[ExecuteTask, TaskRetriedEvent]:
    """The next attempt of ``task`` and the ``TaskRetriedEvent`` announcing it (send in this order).

    ``error`` should carry ``seconds_before_retry=delay_seconds`` (see ``worker_error``).
    """
    new_meta = dict(task.task_meta if meta is None else meta)
    next_attempt = ExecuteTask(
        version=INFINITIC_VERSION,
        message_id=uuid7(),
        task_name=task.task_name,
        task_id=task.task_id,
        emitter_name=emitter_name,
        task_retry_sequence=task.task_retry_sequence,
        task_retry_index=task.task_retry_index + 1,
        requester=task.requester,
        task_tags=list(task.task_tags),
        task_meta=new_meta,
        client_waiting=task.client_waiting,
        method_name=task.method_name,
        method_parameter_types=task.method_parameter_types,
        method_parameters=list(task.method_parameters),
        last_error=error,
    )
    event = _event(TaskRetriedEvent, task, emitter_name, new_meta,
                   task_retry_delay=round(delay_seconds * 1000), last_error=error)
    return next_attempt, event


def client_task(
    service: str,
    method: str,
    args: Sequence[SerializedData],
    client_name: str,
    *,
    parameter_types: Sequence[str] | None = None,
    meta: Mapping[str, bytes] | None = None,
    tags: Sequence[str] = (),
    task_id: str | None = None,
) -> ExecuteTask:
    """An ``ExecuteTask`` a client sends to ``task-executor:<service>``, awaiting the outcome on
    ``response:<client_name>``. ``parameter_types``: the JVM's erased parameter class names
    (``java.lang.String``), needed only to pick between overloads (None lets the JVM match by
    name and arity)."""
    return ExecuteTask(
        version=INFINITIC_VERSION,
        message_id=uuid7(),
        task_name=service,
        task_id=task_id or uuid7(),
        emitter_name=client_name,
        task_retry_sequence=0,
        task_retry_index=0,
        requester=ClientRequester(client_name=client_name),
        task_tags=list(tags),
        task_meta=dict(meta or {}),
        client_waiting=True,
        method_name=method,
        method_parameter_types=None if parameter_types is None else list(parameter_types),
        method_parameters=list(args),
    )


__all__ = [
    "ClientRequester",
    "TaskEvent",
    "WorkflowRequester",
    "client_task",
    "completed",
    "failed",
    "generic_exception",
    "retry",
    "started",
    "uuid7",
    "worker_error",
]
