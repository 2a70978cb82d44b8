"""DRAFT ``InfiniticDialect``: Infinitic 0.18's wire on the executor's seam (pure, no I/O).

Shaped after ``infinitic_py.wire.Dialect`` of the worker redesign (issue 13); the coordinator adapts
it at merge (``_seam`` holds stand-ins for ``Publish`` / ``Subscription`` / ``Undecodable``).

Per service ``S`` in ``persistent://<tenant>/<namespace>/`` (Infinitic's tenant and namespace):

- consumes ``task-executor:<S>`` with subscription ``task-executor-subscription`` (Shared; DLQ
  ``task-executor-dlq:<S>``). With ``handlers=True`` it also lists ``task-retry:<S>`` (role
  ``"retry"``) and ``task-events:<S>`` (role ``"events"``) for a worker that plays Infinitic's retry
  and event handlers (the executor does not handle those roles yet: deployment B of WIRE.md keeps
  them in a JVM worker with ``concurrency: 0``);
- ``started``: one ``TaskStartedEvent`` on ``task-events:<S>``;
- ``completed``: one ``TaskCompletedEvent`` (the output as JSON for the JVM's declared type);
- ``retried``: the next attempt on ``task-retry:<S>`` delivered after ``delay`` (or straight to
  ``task-executor:<S>`` when ``delay <= 0``, as the JVM does), THEN ``TaskRetriedEvent``;
- ``failed``: one ``TaskFailedEvent`` (the workflow or client learns it through the event handler);
  no dead letter, as the JVM (its DLQ holds only messages the broker gave up redelivering);
- ``undecodable``: the original payload on ``task-executor-dlq:<S>``.

Every producer must carry ``producer_schema(topic)`` (the JVM's exact Avro definition). Decoding
needs the message's writer schema version; see ``TRANSPORT NEEDS`` below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from infinitic_py.transport.base import OutgoingMessage, ReceivedMessage
from infinitic_py.wire.infinitic import envelopes, outcomes, values
from infinitic_py.wire.infinitic._seam import Publish, Subscription, Undecodable
from infinitic_py.wire.infinitic.schemas import Envelope, definition

EXECUTOR_SUBSCRIPTION = "task-executor-subscription"
RETRY_SUBSCRIPTION = "task-retry-subscription"
EVENTS_SUBSCRIPTION = "task-events-subscription"
_PREFIX = re.compile(r"^(?:persistent://[^/]+/[^/]+/)?(?P<prefix>[a-z-]+):")
_SCHEMA_BY_PREFIX = {
    "task-executor": Envelope.TASK_EXECUTOR,
    "task-retry": Envelope.TASK_EXECUTOR,
    "task-executor-dlq": Envelope.TASK_EXECUTOR,
    "task-events": Envelope.TASK_EVENTS,
    "response": Envelope.CLIENT,
    "workflow-engine": Envelope.WORKFLOW_ENGINE,
    "task-tag": Envelope.TASK_TAG,
}

# TRANSPORT NEEDS (phase 2): a received message's writer schema version, and the writer
# definition of a version not seen yet (``registry.WriterSchemas``: one lookup per topic and
# version, ever). Until ``ReceivedMessage`` has a ``schema_version`` field, the version is read
# from the Pulsar message in ``handle``; a message without one (memory transport, or a producer
# without schema) is read with the 0.18.4 schema.
SchemaVersionOf = Callable[[ReceivedMessage], int | None]
WriterDefinition = Callable[[str, int], str]


def _version_from_handle(message: ReceivedMessage) -> int | None:
    version = getattr(message, "schema_version", None)
    if version is not None:
        return int(version)
    native = getattr(message.handle, "_message", None)
    if native is None or not hasattr(native, "int_schema_version"):
        return None
    raw = int(native.int_schema_version())
    return None if raw < 0 else raw


class InfiniticDialect:
    """Infinitic 0.18 envelopes on Infinitic's topics (see the module docstring)."""

    name = "infinitic"
    announces_start = True

    def __init__(
        self,
        tenant: str,
        namespace: str,
        *,
        writer_definition: WriterDefinition | None = None,
        schema_version_of: SchemaVersionOf = _version_from_handle,
        handlers: bool = False,
    ) -> None:
        self.tenant, self.namespace, self.handlers = tenant, namespace, handlers
        self._writer_definition = writer_definition
        self._schema_version_of = schema_version_of

    # --- topics ---------------------------------------------------------------------------

    def topic(self, prefix: str, entity: str) -> str:
        return f"persistent://{self.tenant}/{self.namespace}/{prefix}:{entity}"

    def subscriptions(self, service: str) -> Sequence[Subscription]:
        subs = [
            Subscription(
                self.topic("task-executor", service),
                EXECUTOR_SUBSCRIPTION,
                dead_letter_topic=self.dead_letter_topic(service),
            )
        ]
        if self.handlers:
            subs.append(Subscription(self.topic("task-retry", service), RETRY_SUBSCRIPTION, "retry"))
            subs.append(Subscription(self.topic("task-events", service), EVENTS_SUBSCRIPTION, "events"))
        return tuple(subs)

    def dead_letter_topic(self, service: str) -> str:
        return self.topic("task-executor-dlq", service)

    def producer_schema(self, topic: str) -> str | None:
        """The JVM's exact Avro definition for Infinitic topics (None for others)."""
        found = _PREFIX.match(topic)
        envelope = _SCHEMA_BY_PREFIX.get(found["prefix"]) if found else None
        return definition(envelope) if envelope is not None else None

    # --- in -------------------------------------------------------------------------------

    def decode(self, message: ReceivedMessage) -> envelopes.ExecuteTask | Undecodable:
        try:
            writer = None
            version = self._schema_version_of(message)
            if version is not None and self._writer_definition is not None:
                writer = self._writer_definition(message.topic, version)
            return envelopes.decode_execute_task(message.data, writer)
        except Exception as exc:  # WireDecodeError, or a writer schema that cannot be had
            return Undecodable(exc)

    def decode_args(self, task: envelopes.ExecuteTask, method: Any) -> tuple[Any, ...]:
        """``method``: a ``MethodDefinition`` (its ``param_types``). Raises ``ValueMappingError``."""
        return tuple(values.decode_args(task.method_parameters, tuple(method.param_types)))

    # --- out ------------------------------------------------------------------------------

    def _event(self, event: envelopes.AnyTaskEvent) -> Publish:
        return Publish(
            self.topic("task-events", event.service_name),
            OutgoingMessage(envelopes.encode_task_event(event)),
        )

    def started(self, task: envelopes.ExecuteTask) -> Sequence[Publish]:
        # the seam passes no worker name here: copy the dispatcher's, as the JVM does for every event
        return (self._event(outcomes.started(task, task.emitter_name)),)

    def completes_silently(self, task: envelopes.ExecuteTask) -> bool:
        return False  # the JVM's event handler waits for every TaskCompletedEvent

    def completed(self, task: envelopes.ExecuteTask, output: Any, worker: str) -> Sequence[Publish]:
        data = values.encode_value(output)  # raises ValueMappingError (a TypeError)
        return (self._event(outcomes.completed(task, data, worker)),)

    def retried(
        self, task: envelopes.ExecuteTask, error: BaseException, trace: str | None, delay: float,
        worker: str,
    ) -> Sequence[Publish]:  # fmt: skip
        failure = outcomes.worker_error(task, error, worker, seconds_before_retry=delay, trace=trace)
        next_attempt, event = outcomes.retry(task, failure, delay, worker)
        payload = envelopes.encode_execute_task(next_attempt)
        if delay > 0:
            retry = Publish(
                self.topic("task-retry", task.task_name), OutgoingMessage(payload, deliver_after=delay)
            )
        else:
            retry = Publish(self.topic("task-executor", task.task_name), OutgoingMessage(payload))
        return (retry, self._event(event))

    def failed(
        self, task: envelopes.ExecuteTask, error: BaseException, trace: str | None, reason: str,
        payload: bytes, worker: str,
    ) -> Sequence[Publish]:  # fmt: skip
        failure = outcomes.worker_error(task, error, worker, trace=trace)
        return (self._event(outcomes.failed(task, failure, worker)),)

    def undecodable(
        self, message: ReceivedMessage, error: Exception, service: str, worker: str
    ) -> Sequence[Publish]:
        properties = {"reason": "undecodable", "errorType": type(error).__name__}
        return (Publish(self.dead_letter_topic(service), OutgoingMessage(message.data, properties)),)
