"""The Infinitic dialect's dead letters, as the operator tools read and replay them (pure).

A service ``S`` of ``wire: infinitic`` has the JVM's three dead-letter topics, each read through
the durable subscription ``infinitic-py-dlq`` the worker creates on it:

- ``task-executor-dlq:<S>``: ``ExecuteTask`` envelopes (Avro, with the schema version they were
  written with): moved there by Pulsar after ``max_redeliveries`` nacks (reason
  ``max_redeliveries``), or written by the worker because they could not be served (reason
  ``undecodable``, the payload as received and the error in the message's properties);
- ``task-retry-dlq:<S>``: delayed retries (``ExecuteTask``) the retry relay could not forward;
- ``task-events-dlq:<S>``: task events (``TaskCompletedEvent``...) the event relay could not
  turn into the waiting workflow's (or client's) message.

Replay, in Infinitic's own format, on the topics the JVM and the worker read:

- a task goes back to ``task-executor:<S>`` as Infinitic's own manual retry makes one (the
  engine's ``retryTasks``): the same task id, requester (workflow name, id and method run),
  meta, tags, ``clientWaiting`` and arguments, so its outcome reaches the workflow still waiting
  for it (the engine completes a task whose status is ``Failed``, a transient status, too);
  the next ``taskRetrySequence``, ``taskRetryIndex`` 0 (a fresh retry budget, and no worker takes
  it for a copy of an attempt it settled), a new message id; re-encoded with the 0.18.4 schema;
- an event goes back, unchanged but for the schema, to ``task-events:<S>``, where the event
  relay (the JVM's, or the worker's with ``event_handler``) delivers it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from infinitic_py.transport.base import OutgoingMessage, ReceivedMessage
from infinitic_py.wire import Publish, key_text
from infinitic_py.wire.infinitic import envelopes, outcomes, values
from infinitic_py.wire.infinitic.dialect import EVENTS_SUBSCRIPTION, EXECUTOR_SUBSCRIPTION
from infinitic_py.wire.infinitic.schemas import Envelope, definition
from infinitic_py.wire.letters import (
    KIND_EVENT,
    KIND_NONE,
    KIND_TASK,
    LetterTopic,
    LetterView,
    jsonable,
)
from infinitic_py.wire.native import PROP_ERROR_MESSAGE, PROP_WORKER

__all__ = ["InfiniticLetters"]

_ROLES = (("task-executor-dlq", "execute"), ("task-retry-dlq", "retry"),
          ("task-events-dlq", "events"))
_EVENTS = (envelopes.TaskStartedEvent, envelopes.TaskCompletedEvent, envelopes.TaskFailedEvent,
           envelopes.TaskRetriedEvent)
_MOVED = {  # what the broker's move after max_redeliveries nacks means, per role
    "execute": "nacked more than max_redeliveries times: no worker could settle it",
    "retry": "nacked more than max_redeliveries times by the retry relay: never forwarded "
             "to task-executor",
    "events": "nacked more than max_redeliveries times by the event relay: never delivered",
}


def _requester(requester: envelopes.Requester | None) -> dict[str, Any] | None:
    if isinstance(requester, envelopes.WorkflowRequester):
        return {"workflow": requester.workflow_name, "workflow_id": requester.workflow_id,
                "workflow_method": requester.workflow_method_name,
                "workflow_method_id": requester.workflow_method_id}
    if isinstance(requester, envelopes.ClientRequester):
        return {"client": requester.client_name}
    return None


def _value(data: envelopes.SerializedData) -> Any:
    """A serialized argument or result as JSON shows it (its raw text when unreadable)."""
    try:
        return jsonable(values.decode_value(data), text=True)
    except Exception:  # ValueMappingError, or RecursionError (hostile nesting)
        return {"type": data.kind, "raw": data.data.decode("utf-8", "backslashreplace")}


def _waiting(requester: envelopes.Requester | None) -> str:
    if isinstance(requester, envelopes.WorkflowRequester):
        return f"workflow {requester.workflow_name} {requester.workflow_id}"
    if isinstance(requester, envelopes.ClientRequester):
        return f"client {requester.client_name}"
    return "nobody"


def _failure(props: Mapping[str, str], role: str, what: str) -> dict[str, Any]:
    """reason / error_type / message / worker of a letter: the worker's own (properties) when
    it wrote the letter, else the broker's move."""
    if "reason" in props:
        return {"reason": props["reason"], "error_type": props.get("errorType", ""),
                "message": props.get(PROP_ERROR_MESSAGE, ""), "worker": props.get(PROP_WORKER)}
    return {"reason": "max_redeliveries", "error_type": "MaxRedeliveries",
            "message": f"{_MOVED.get(role, _MOVED['execute'])} ({what})", "worker": None}


class InfiniticLetters:
    """``wire.letters.DeadLetters`` of ``InfiniticDialect`` (see the module docstring)."""

    wire = "infinitic"

    def __init__(self, tenant: str, namespace: str) -> None:
        self.tenant, self.namespace = tenant, namespace

    def _topic(self, prefix: str, service: str) -> str:
        return f"persistent://{self.tenant}/{self.namespace}/{prefix}:{service}"

    def letter_topics(self, service: str) -> Sequence[LetterTopic]:
        return tuple(LetterTopic(self._topic(prefix, service), role, writer_schemas=True)
                     for prefix, role in _ROLES)

    # --- read ------------------------------------------------------------------------------

    def read(self, message: ReceivedMessage, *, role: str, service: str,
             published_at: float | None) -> list[LetterView] | None:
        props = dict(message.properties)
        when = published_at if published_at is not None else 0.0
        common: dict[str, Any] = {"properties": props, "failed_at": when, "traceback": None,
                                  "wire": self.wire,
                  "topic": message.topic}
        try:
            if role == "events":
                event = envelopes.decode_task_event(message.data, message.writer_schema)
                return [self._event_view(event, role, props, common)]
            task = envelopes.decode_execute_task(message.data, message.writer_schema)
        except Exception:  # WireDecodeError, a writer schema that cannot be read
            if "reason" not in props:
                return None  # no letter of this dialect (or nothing anyone can read)
            return [LetterView(**common, **_failure(props, role, "unreadable"),
                               retry_index=0, task_id=None, service=service, method=None,
                               batch_key=None, task=None, kind=KIND_NONE)]
        return [self._task_view(task, role, props, common)]

    def _task_view(self, task: envelopes.ExecuteTask, role: str, props: Mapping[str, str],
                   common: dict[str, Any]) -> LetterView:
        waiting = _waiting(task.requester)
        facts = {"retry_sequence": task.task_retry_sequence, "waiting": waiting,
                 "requester": _requester(task.requester)}
        detail = {"args": [_value(p) for p in task.method_parameters],
                  "parameter_types": task.method_parameter_types,
                  "meta": jsonable(task.task_meta, text=True), "tags": list(task.task_tags),
                  "client_waiting": task.client_waiting, "emitter": task.emitter_name,
                  "last_error": _last_error(task.last_error)}
        return LetterView(**common, **_failure(props, role, f"{waiting} waits for it"),
                          retry_index=task.task_retry_index, task_id=task.task_id,
                          service=task.task_name, method=task.method_name,
                          batch_key=key_text(task.batch_key()), task=task, kind=KIND_TASK,
                          facts=facts, detail=detail)

    def _event_view(self, event: envelopes.AnyTaskEvent, role: str, props: Mapping[str, str],
                    common: dict[str, Any]) -> LetterView:
        name = type(event).__name__
        waiting = _waiting(event.requester)
        facts = {"event": name, "retry_sequence": event.task_retry_sequence,
                 "waiting": waiting, "requester": _requester(event.requester)}
        detail: dict[str, Any] = {"meta": jsonable(event.task_meta, text=True),
                                  "tags": list(event.task_tags), "emitter": event.emitter_name}
        if isinstance(event, envelopes.TaskCompletedEvent):
            detail["result"] = _value(event.return_value)
        elif isinstance(event, envelopes.TaskFailedEvent):
            detail["error"] = _last_error(event.execution_error)
        return LetterView(**common, **_failure(props, role, f"{name} for {waiting}"),
                          retry_index=event.task_retry_index, task_id=event.task_id,
                          service=event.service_name, method=event.method_name,
                          batch_key=key_text(event.task_meta.get("batchKey")), task=event,
                          kind=KIND_EVENT, facts=facts, detail=detail)

    # --- replay ----------------------------------------------------------------------------

    def replay(self, letter: LetterView, *, service: str, to_service: str | None = None,
               now: float | None = None) -> Publish:
        item = letter.task
        if isinstance(item, envelopes.ExecuteTask):
            target = to_service or service
            attempt = msgspec.structs.replace(
                item, version=envelopes.INFINITIC_VERSION, message_id=outcomes.uuid7(),
                task_name=target, task_retry_sequence=item.task_retry_sequence + 1,
                task_retry_index=0)
            return Publish(self._topic("task-executor", target),
                           OutgoingMessage(envelopes.encode_execute_task(attempt)))
        if isinstance(item, _EVENTS):
            # to the relay of the event's own service: it names the task that emitted it
            return Publish(self._topic("task-events", item.service_name),
                           OutgoingMessage(envelopes.encode_task_event(item)))
        raise ValueError(f"dead letter of task {letter.task_id or '?'} ({letter.reason}) holds no "
                         "readable Infinitic message: it cannot be replayed (purge it)")

    def producer_schema(self, topic: str) -> str | None:
        local = topic.rsplit("/", 1)[-1]
        if local.startswith("task-events:"):
            return definition(Envelope.TASK_EVENTS)
        return definition(Envelope.TASK_EXECUTOR)

    def keep_subscription(self, topic: str) -> str | None:
        local = topic.rsplit("/", 1)[-1]
        return EVENTS_SUBSCRIPTION if local.startswith("task-events:") else EXECUTOR_SUBSCRIPTION


def _last_error(error: envelopes.WorkerError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    exception = error.exception
    return {"worker": error.worker_name, "retry_index": error.retry_index,
            "name": exception.name if exception else error.name,
            "message": exception.message if exception else error.message}
