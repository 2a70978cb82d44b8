"""Infinitic's task *event handler* role in Python (pure): task events -> the requester's messages.

Infinitic's ``TaskEventHandler`` consumes ``task-events:<S>`` and tells whoever waits:

- ``TaskCompletedEvent`` / ``TaskFailedEvent`` with a ``WorkflowRequester`` ->
  ``WorkflowEngineEnvelope`` ``TASK_COMPLETED`` / ``TASK_FAILED`` on ``workflow-engine:<W>``,
  **key = workflowId**, routed to a partition with Java's ``String.hashCode`` (``java_partition``:
  the Java client's default ``JavaStringHash``; pulsar-client's Python/C++ default differs, so a
  producer must pass ``message_router``), ``emittedAt`` = the publish time of the event message;
- the same with a ``ClientRequester`` and ``clientWaiting`` -> ``ClientEnvelope`` on
  ``response:<client>`` (no key);
- started and retried events -> nothing.

Not done here: tag bookkeeping (``task-tag:<S>``, only with a JVM tag engine and tagged tasks) and
delegated tasks.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import msgspec

from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic.envelopes import (
    INFINITIC_VERSION,
    SerializedData,
    WorkerError,
    to_record,
    write_envelope,
)
from infinitic_py.wire.infinitic.outcomes import uuid7
from infinitic_py.wire.infinitic.schemas import Envelope, definition


class TaskReturnValue(msgspec.Struct, rename="camel"):
    task_id: str
    task_name: str
    method_name: str | None
    task_meta: dict[str, bytes]
    return_value: SerializedData


class FailedTaskError(msgspec.Struct, rename="camel"):
    task_name: str
    method_name: str
    task_id: str
    cause: WorkerError


class _RemoteTaskOutcome(msgspec.Struct, rename="camel", kw_only=True):
    """What ``RemoteTaskCompleted`` and ``RemoteTaskFailed`` share: the waiting workflow method.
    (Written by field name: the Avro order is the schema's, not this class's.)"""

    version: str | None = INFINITIC_VERSION
    message_id: str
    workflow_name: str
    workflow_id: str
    workflow_version: int | None
    workflow_method_name: str | None
    method_run_id: str
    emitter_name: str
    emitted_at: int | None


class RemoteTaskCompleted(_RemoteTaskOutcome, kw_only=True):
    task_return_value: TaskReturnValue


class RemoteTaskFailed(_RemoteTaskOutcome, kw_only=True):
    failed_task_error: FailedTaskError
    deferred_error: Any = None


def _waiting(requester: env.WorkflowRequester, emitter_name: str,
             publish_time_ms: int | None) -> dict[str, Any]:
    """The ``_RemoteTaskOutcome`` fields for the workflow method waiting on a task."""
    return {
        "message_id": uuid7(),
        "workflow_name": requester.workflow_name,
        "workflow_id": requester.workflow_id,
        "workflow_version": requester.workflow_version,
        "workflow_method_name": requester.workflow_method_name,
        "method_run_id": requester.workflow_method_id,
        "emitter_name": emitter_name,
        "emitted_at": publish_time_ms,
    }


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message of the handler: topic prefix and entity (``workflow-engine``, W), key, payload."""

    prefix: str
    entity: str
    key: str | None
    payload: bytes


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units), as a signed 32-bit int."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def java_partition(key: str, partitions: int) -> int:
    """The partition the Java client's default router picks for ``key`` (JavaStringHash)."""
    return (java_string_hash(key) & 0x7FFFFFFF) % partitions


def on_event(event: env.AnyTaskEvent, publish_time_ms: int | None, emitter_name: str) -> list[Outgoing]:
    """The messages Infinitic's event handler sends for ``event`` (see the module docstring)."""
    requester = event.requester
    if isinstance(event, env.TaskCompletedEvent):
        if event.is_delegated:
            return []  # its result comes later through completeDelegatedTask (not supported)
        if isinstance(requester, env.WorkflowRequester):
            completed = RemoteTaskCompleted(
                task_return_value=TaskReturnValue(
                    event.task_id, event.service_name, event.method_name, event.task_meta,
                    event.return_value,
                ),
                **_waiting(requester, emitter_name, publish_time_ms),
            )  # fmt: skip
            return [_engine(requester, "TASK_COMPLETED", "taskCompleted", completed)]
        if event.client_waiting:
            reply = env.ClientTaskCompleted(
                uuid7(), emitter_name, requester.client_name, event.task_id, event.return_value,
                event.task_meta,
            )  # fmt: skip
            return [_client(requester.client_name, reply)]
        return []
    if isinstance(event, env.TaskFailedEvent):
        if isinstance(requester, env.WorkflowRequester):
            failed = RemoteTaskFailed(
                failed_task_error=FailedTaskError(
                    event.service_name, event.method_name, event.task_id, event.execution_error
                ),
                **_waiting(requester, emitter_name, publish_time_ms),
            )
            return [_engine(requester, "TASK_FAILED", "taskFailed", failed)]
        if event.client_waiting:
            failure = env.ClientTaskFailed(
                uuid7(), requester.client_name, event.task_id, event.execution_error, emitter_name
            )
            return [_client(requester.client_name, failure)]
    return []


@functools.cache
def _engine_slots() -> tuple[str, ...]:
    return tuple(str(f["name"]) for f in json.loads(definition(Envelope.WORKFLOW_ENGINE))["fields"][2:])


def _engine(requester: env.WorkflowRequester, kind: str, slot: str, message: msgspec.Struct) -> Outgoing:
    record: dict[str, Any] = dict.fromkeys(_engine_slots())
    record.update({"workflowId": requester.workflow_id, "type": kind, slot: to_record(message)})
    payload = write_envelope(Envelope.WORKFLOW_ENGINE, record)
    return Outgoing("workflow-engine", requester.workflow_name, requester.workflow_id, payload)


def _client(client_name: str, message: env.ClientMessage) -> Outgoing:
    return Outgoing("response", client_name, None, env.encode_client_message(client_name, message))
