"""``InfiniticDialect``: Infinitic 0.18's wire on the executor's seam (``wire.Dialect``; pure).

Per service ``S`` in ``persistent://<tenant>/<namespace>/`` (Infinitic's tenant and namespace):

- consumes ``task-executor:<S>`` with subscription ``task-executor-subscription`` (Shared; DLQ
  ``task-executor-dlq:<S>``). With ``handlers=True`` it also lists ``task-retry:<S>`` (role
  ``"retry"``: forwarded to ``task-executor:<S>`` unchanged, as the JVM's retry handler does) and
  ``task-events:<S>`` (role ``"events"``: Infinitic's task event handler, ``handler.on_event``:
  completions / failures to the waiting workflow, keyed and partitioned as the JVM does, or to
  the waiting client), relayed by ``worker/relay.py``; a message of these two that cannot be
  read goes once to ``task-retry-dlq:<S>`` / ``task-events-dlq:<S>`` (the JVM's dead-letter
  topics of those roles), with its reason; a retry written with another schema version than
  0.18.4 is re-encoded (its bytes cannot travel under the 0.18.4 schema); without
  ``handlers`` a JVM worker of ``S`` plays them (e.g. with ``concurrency: 0``);
- ``started``: one ``TaskStartedEvent`` on ``task-events:<S>``;
- ``completed``: one ``TaskCompletedEvent`` (the output as JSON for the JVM's declared type);
- ``retried``: the next attempt on ``task-retry:<S>`` delivered after ``delay`` (or straight to
  ``task-executor:<S>`` when ``delay <= 0``, as the JVM does), THEN ``TaskRetriedEvent``;
- ``failed``: one ``TaskFailedEvent`` (the workflow or client learns it through the event handler);
  no dead letter, as the JVM (its DLQ holds only messages the broker gave up redelivering);
- ``undecodable``: the original payload on ``task-executor-dlq:<S>``, the reason in its
  properties (``reason``, ``errorType``, ``errorMessage``, ``worker``);
- ``last_words``: before the nack that makes the broker dead-letter a task (its redelivery
  count reached ``max_redeliveries``), one ``TaskFailedEvent``, as the JVM's ``beforeDlq``.

Every consumer subscribes with the topic's Avro definition: the broker moves a message nacked
``max_redeliveries`` times with the consumer's schema, and Infinitic's schema-enforced
dead-letter topics refuse a schemaless producer (the message would stay stuck).

Every producer carries ``producer_schema(topic)`` (the JVM's exact Avro definition: no new schema
version appears); each message is read with its writer schema (``ReceivedMessage.writer_schema``,
resolved by the transport: the subscriptions ask for it), or the 0.18.4 schema when it has none.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from infinitic_py.topics import unpartitioned
from infinitic_py.transport.base import OutgoingMessage, Partitioner, ReceivedMessage
from infinitic_py.wire import Publish, Subscription, Undecodable, error_text
from infinitic_py.wire.bulk import MAX_BULK_BYTES
from infinitic_py.wire.infinitic import envelopes, outcomes, values
from infinitic_py.wire.infinitic import handler as handler_role
from infinitic_py.wire.infinitic.events import EVENTS
from infinitic_py.wire.infinitic.schemas import Envelope, definition
from infinitic_py.wire.letters import DeadLetters
from infinitic_py.wire.native import PROP_ERROR_MESSAGE, PROP_WORKER

if TYPE_CHECKING:
    from infinitic_py.service import MethodDefinition

EXECUTOR_SUBSCRIPTION = "task-executor-subscription"
RETRY_SUBSCRIPTION = "task-retry-subscription"
EVENTS_SUBSCRIPTION = "task-events-subscription"
_PREFIX = re.compile(r"^(?:persistent://[^/]+/[^/]+/)?(?P<prefix>[a-z-]+):")
_SCHEMA_BY_PREFIX = {
    "task-executor": Envelope.TASK_EXECUTOR,
    "task-retry": Envelope.TASK_EXECUTOR,
    "task-executor-dlq": Envelope.TASK_EXECUTOR,
    "task-retry-dlq": Envelope.TASK_EXECUTOR,
    "task-events": Envelope.TASK_EVENTS,
    "task-events-dlq": Envelope.TASK_EVENTS,
    "response": Envelope.CLIENT,
    "workflow-engine": Envelope.WORKFLOW_ENGINE,
    "task-tag": Envelope.TASK_TAG,
}

class InfiniticDialect:
    """Infinitic 0.18 envelopes on Infinitic's topics (see the module docstring)."""

    name = "infinitic"
    announces_start = True

    def __init__(self, tenant: str, namespace: str, *, handlers: bool = False,
                 partitions: int = 3) -> None:
        self.tenant, self.namespace, self.handlers = tenant, namespace, handlers
        self.partitions = partitions  # of the topics it creates where missing
        self._events_topics: dict[str, str] = {}  # service -> its task-events topic
        self._served: dict[str, str] = {}  # topic (partition) received on -> its service

    # --- topics ---------------------------------------------------------------------------

    def topic(self, prefix: str, entity: str) -> str:
        return f"persistent://{self.tenant}/{self.namespace}/{prefix}:{entity}"

    def subscriptions(self, service: str) -> Sequence[Subscription]:
        subs = [
            Subscription(
                self.topic("task-executor", service),
                EXECUTOR_SUBSCRIPTION,
                dead_letter_topic=self.dead_letter_topic(service),
                writer_schemas=True,
                schema=definition(Envelope.TASK_EXECUTOR),
            )
        ]
        if self.handlers:  # the JVM's dead-letter topics of these roles: <prefix>-dlq:<S>
            subs.append(Subscription(self.topic("task-retry", service), RETRY_SUBSCRIPTION,
                                     "retry", self.topic("task-retry-dlq", service),
                                     writer_schemas=True, schema=definition(Envelope.TASK_EXECUTOR)))
            subs.append(Subscription(self.topic("task-events", service), EVENTS_SUBSCRIPTION,
                                     "events", self.topic("task-events-dlq", service),
                                     writer_schemas=True, schema=definition(Envelope.TASK_EVENTS)))
        return tuple(subs)

    def topics(self, service: str) -> Mapping[str, int]:
        """Infinitic namespaces have auto topic creation off: the service's topics, created as
        the JVM does (partitioned) where missing; the dead-letter topics non-partitioned (the
        broker cannot create them when it moves a message there)."""
        wanted = {self.topic(p, service): self.partitions
                  for p in ("task-executor", "task-retry", "task-events")}
        wanted[self.dead_letter_topic(service)] = 0
        if self.handlers:
            wanted[self.topic("task-retry-dlq", service)] = 0
            wanted[self.topic("task-events-dlq", service)] = 0
        return wanted

    def partitioner(self, topic: str) -> Partitioner | None:
        """``workflow-engine:<W>`` is keyed by workflow id and partitioned as the Java client
        does (``JavaStringHash``): the JVM engine expects one workflow on one partition."""
        found = _PREFIX.match(topic)
        if found and found["prefix"] == "workflow-engine":
            return handler_role.java_partition
        return None

    def dead_letter_topic(self, service: str) -> str:
        return self.topic("task-executor-dlq", service)

    def dead_letters(self) -> DeadLetters:
        """How the operator tools read and replay this dialect's dead letters."""
        from infinitic_py.wire.infinitic.letters import InfiniticLetters

        return InfiniticLetters(self.tenant, self.namespace)

    def producer_schema(self, topic: str) -> str | None:
        """The JVM's exact Avro definition for Infinitic topics (None for others)."""
        found = _PREFIX.match(topic)
        envelope = _SCHEMA_BY_PREFIX.get(found["prefix"]) if found else None
        return definition(envelope) if envelope is not None else None

    # --- in -------------------------------------------------------------------------------

    def decode(self, message: ReceivedMessage) -> envelopes.ExecuteTask | Undecodable:
        try:
            task = envelopes.decode_execute_task(message.data, message.writer_schema)
        except Exception as exc:  # WireDecodeError, or a writer schema that cannot be had
            return Undecodable(exc)
        if task.requester is None:  # valid Avro (Infinitic < 0.13 wrote it), but no event
            # could name whom to tell: dead-lettered once, never a unit that crashes each time
            return Undecodable(envelopes.WireDecodeError(
                f"task {task.task_id} has no requester (written by Infinitic < 0.13?): "
                "no workflow or client could be told its outcome"))
        served = self._served.get(message.topic)
        if served is None:
            served = _entity(message.topic)
            if len(self._served) < 1024:  # the partitions of a worker's topics: a handful
                self._served[message.topic] = served
        if task.task_name != served:  # its events would go to another service's topics
            # (refused where auto topic creation is off: the unit re-run each time)
            return Undecodable(envelopes.WireDecodeError(
                f"task {task.task_id} names service {task.task_name!r}, "
                f"this topic serves {served!r}"))
        return task

    def decode_args(self, task: envelopes.ExecuteTask, method: MethodDefinition) -> tuple[Any, ...]:
        """Raises ``ValueMappingError`` (the task then fails: never a crashed worker)."""
        return tuple(values.decode_args(task.method_parameters, tuple(method.param_types)))

    # --- out ------------------------------------------------------------------------------

    def _events_topic(self, service: str) -> str:
        topic = self._events_topics.get(service)
        if topic is None:
            topic = self.topic("task-events", service)
            if len(self._events_topics) < 256:  # the services of a worker: a handful
                self._events_topics[service] = topic
        return topic

    def _event(self, event: envelopes.AnyTaskEvent) -> Publish:
        return Publish(self._events_topic(event.service_name),
                       OutgoingMessage(envelopes.encode_task_event(event)))

    def started(self, task: envelopes.ExecuteTask) -> Sequence[Publish]:
        # the seam passes no worker name here: copy the dispatcher's, as the JVM does for every
        # event. The two hot events are written straight from the task (``events``).
        payload = EVENTS.started(task, outcomes.uuid7(), task.emitter_name)
        return (Publish(self._events_topic(task.task_name), OutgoingMessage(payload)),)

    def completes_silently(self, task: envelopes.ExecuteTask) -> bool:
        return False  # the JVM's event handler waits for every TaskCompletedEvent

    def completed(self, task: envelopes.ExecuteTask, output: Any, worker: str) -> Sequence[Publish]:
        data = values.encode_value(output)  # raises ValueMappingError (a TypeError)
        payload = EVENTS.completed(task, outcomes.uuid7(), worker, data)
        if len(payload) > MAX_BULK_BYTES:  # the broker would refuse it: the task fails instead
            # (published anyway, it would be nacked and re-run until Pulsar dead-letters it,
            # the JVM workflow never told)
            raise values.ValueMappingError(
                f"the result of {task.task_name}.{task.method_name} is {len(data.data):,} bytes "
                f"of JSON: its TaskCompletedEvent ({len(payload):,} bytes) exceeds a Pulsar "
                f"message ({MAX_BULK_BYTES:,} bytes)")
        return (Publish(self._events_topic(task.task_name), OutgoingMessage(payload)),)

    def retried(
        self, task: envelopes.ExecuteTask, error: BaseException, trace: str | None, delay: float,
        worker: str,
    ) -> Sequence[Publish]:  # fmt: skip
        EVENTS.forget(task)
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
        EVENTS.forget(task)
        failure = outcomes.worker_error(task, error, worker, trace=trace)
        return (self._event(outcomes.failed(task, failure, worker)),)

    def last_words(self, task: envelopes.ExecuteTask, error: BaseException,
                   worker: str) -> Sequence[Publish]:
        """Told before the broker dead-letters ``task`` (its last nack: the executor could
        never make its outcomes durable): a ``TaskFailedEvent`` with that error, so the waiting
        workflow (or client) learns it, as the JVM worker's ``beforeDlq`` hook does. A replay
        of the letter later completes the task all the same (a failed task's status is
        transient in the workflow engine)."""
        return self.failed(task, error, None, "max_redeliveries", b"", worker)

    def undecodable(
        self, message: ReceivedMessage, error: Exception, service: str, worker: str
    ) -> Sequence[Publish]:
        return (_letter(self.dead_letter_topic(service), message, error, worker),)

    # --- relays (handlers=True) -----------------------------------------------------------

    def relay(self, role: str, message: ReceivedMessage, worker: str) -> Sequence[Publish]:
        """A message of a handler role -> what Infinitic's handler sends. A message that cannot
        be read goes to the role's dead-letter topic (``task-retry-dlq:<S>`` /
        ``task-events-dlq:<S>``) with the reason, once: nacking it would loop."""
        service = _entity(message.topic)
        if role == "retry":  # Infinitic's retry handler: the delayed attempt, unchanged
            try:
                task = envelopes.decode_execute_task(message.data, message.writer_schema)
            except Exception as exc:  # WireDecodeError, or a writer schema that cannot be had
                return (_letter(self.topic("task-retry-dlq", service), message, exc, worker),)
            data = message.data
            if message.writer_schema not in (None, definition(Envelope.TASK_EXECUTOR)):
                # written with another schema version (an older or newer JVM): its bytes
                # cannot travel under the 0.18.4 schema this producer registers: re-encode
                data = envelopes.encode_execute_task(task)
            return (Publish(self.topic("task-executor", service), OutgoingMessage(data)),)
        if role == "events":  # Infinitic's task event handler
            try:
                event = envelopes.decode_task_event(message.data, message.writer_schema)
            except Exception as exc:
                return (_letter(self.topic("task-events-dlq", service), message, exc, worker),)
            # emittedAt: when the event was published, as the JVM's handler stamps it (the
            # engine compares it with timeouts' times: the relay's own clock runs late)
            emitted_ms = message.publish_time_ms or int(time.time() * 1000)
            return tuple(  # a client's answer is a reply: dropped if its topic is gone
                Publish(self.topic(out.prefix, out.entity),
                        OutgoingMessage(out.payload, partition_key=out.key),
                        reply=out.prefix == "response")
                for out in handler_role.on_event(event, emitted_ms, worker)
            )
        raise ValueError(f"InfiniticDialect relays no {role!r} subscription")


def _letter(topic: str, message: ReceivedMessage, error: BaseException, worker: str) -> Publish:
    """A message that cannot be read, as is, on a dead-letter topic, the reason in properties
    (what ``infinitic-py dlq`` reads of a letter: ``wire.infinitic.letters``)."""
    properties = {"reason": "undecodable", "errorType": type(error).__name__,
                  PROP_ERROR_MESSAGE: error_text(error), PROP_WORKER: worker}
    return Publish(topic, OutgoingMessage(message.data, properties))


def _entity(topic: str) -> str:
    """``persistent://t/ns/task-retry:S-partition-1`` -> ``S``."""
    local = topic.rsplit("/", 1)[-1].split(":", 1)[1]
    return unpartitioned(local)
