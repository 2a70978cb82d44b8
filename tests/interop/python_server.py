"""A minimal Python executor of an Infinitic service, for interop proofs (not the product executor).

Built only from the wire codec and pulsar-client: consume ``task-executor:<S>`` (subscription
``task-executor-subscription``, Shared) with the JVM's exact schema, decode each message by its
writer schema version, group by (method, ``batchKey``), publish ``TaskStartedEvent`` per task, run
the group, publish ``TaskCompletedEvent`` / ``TaskFailedEvent`` (or the retry ``ExecuteTask`` on
``task-retry:<S>`` with ``deliver_after``, then ``TaskRetriedEvent``) per task, then ack.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pulsar

from infinitic_py.admin import PulsarAdmin, PulsarAdminError
from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic import handler as handler_role
from infinitic_py.wire.infinitic import outcomes, values
from infinitic_py.wire.infinitic.registry import (
    InfiniticSchema,
    WriterSchemas,
    native_fetcher,
    schema_version,
)
from infinitic_py.wire.infinitic.schemas import Envelope

from .namespaces import TENANT, quote

# (method name, batch key) -> {taskId: argument} -> {taskId: result}; raising fails the whole group
BatchHandler = Callable[[str, bytes | None, dict[str, Any]], dict[str, Any]]
# (task, error) -> seconds before a retry, or None: fail for good
RetryPolicy = Callable[[env.ExecuteTask, BaseException], float | None]


def echo_batch(method: str, key: bytes | None, args: dict[str, Any]) -> dict[str, Any]:
    if method != "echo":
        raise LookupError(f"unknown method {method}")
    return dict(args)


@dataclass
class Stats:
    tasks: int = 0
    batches: list[tuple[str, bytes | None, int]] = field(default_factory=list)
    retries: int = 0
    failures: int = 0
    writer_versions: set[int] = field(default_factory=set)


class PythonServer:
    def __init__(
        self,
        service_url: str,
        admin_url: str,
        namespace: str,
        service: str = "BenchService",
        handler: BatchHandler = echo_batch,
        retry_policy: RetryPolicy = lambda task, error: None,
        name: str = "py-server",
        event_handler: bool = False,
    ) -> None:
        self.service, self.handler, self.retry_policy, self.name = service, handler, retry_policy, name
        self.stats = Stats()
        self._stop = threading.Event()
        base = f"persistent://{TENANT}/{namespace}"
        admin = PulsarAdmin(admin_url)
        for prefix in ("task-executor", "task-retry", "task-events"):
            try:  # auto topic creation is off in Infinitic namespaces: create as the JVM does
                admin.put_json(f"/admin/v2/persistent/{TENANT}/{namespace}/{quote(f'{prefix}:{service}')}/partitions", 3)
            except PulsarAdminError as exc:
                if exc.status != 409:
                    raise
        self.client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
        self.writers = WriterSchemas(native_fetcher(self.client))
        self.consumer = self.client.subscribe(
            f"{base}/task-executor:{service}",
            "task-executor-subscription",
            consumer_type=pulsar.ConsumerType.Shared,
            schema=InfiniticSchema(Envelope.TASK_EXECUTOR),
            initial_position=pulsar.InitialPosition.Earliest,
            batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(100, 10 * 1024 * 1024, 100),
            consumer_name=service,
        )
        self.events = self.client.create_producer(
            f"{base}/task-events:{service}", schema=InfiniticSchema(Envelope.TASK_EVENTS)
        )
        self.retries = self.client.create_producer(
            f"{base}/task-retry:{service}", schema=InfiniticSchema(Envelope.TASK_EXECUTOR)
        )
        self._thread = threading.Thread(target=self._loop, name="py-infinitic-server", daemon=True)
        self.error: BaseException | None = None
        self.base = base
        self.handled: list[handler_role.Outgoing] = []
        self._handler_thread: threading.Thread | None = None
        self._routed: dict[tuple[str, str], pulsar.Producer] = {}
        if event_handler:  # Infinitic's TaskEventHandler role (no JVM service worker needed)
            self.task_events = self.client.subscribe(
                f"{base}/task-events:{service}",
                "task-events-subscription",
                consumer_type=pulsar.ConsumerType.Shared,
                schema=InfiniticSchema(Envelope.TASK_EVENTS),
                initial_position=pulsar.InitialPosition.Earliest,
            )
            self._handler_thread = threading.Thread(target=self._handle_events, daemon=True)

    def start(self) -> PythonServer:
        self._thread.start()
        if self._handler_thread is not None:
            self._handler_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self._handler_thread is not None:
            self._handler_thread.join(30)
        self.client.close()

    def _handle_events(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    message = self.task_events.receive(200)
                except pulsar.Timeout:
                    continue
                version = schema_version(message)
                assert version is not None
                writer = self.writers.lookup(message.topic_name(), version)
                event = env.decode_task_event(message.data(), writer)
                for out in handler_role.on_event(event, message.publish_timestamp(), self.name):
                    self._producer(out.prefix, out.entity).send(out.payload, partition_key=out.key)
                    self.handled.append(out)
                self.task_events.acknowledge(message)
        except BaseException as exc:
            self.error = exc

    def _producer(self, prefix: str, entity: str) -> pulsar.Producer:
        producer = self._routed.get((prefix, entity))
        if producer is None:
            envelope = {"workflow-engine": Envelope.WORKFLOW_ENGINE, "response": Envelope.CLIENT}[prefix]
            producer = self.client.create_producer(
                f"{self.base}/{prefix}:{entity}",
                schema=InfiniticSchema(envelope),
                message_routing_mode=pulsar.PartitionsRoutingMode.CustomPartition,
                message_router=lambda msg, n: handler_role.java_partition(msg.partition_key(), n),
            )
            self._routed[(prefix, entity)] = producer
        return producer

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                messages = self.consumer.batch_receive()
                if messages:
                    self._serve(messages)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def _serve(self, messages: list[pulsar.Message]) -> None:
        groups: dict[tuple[str, bytes | None], list[tuple[pulsar.Message, env.ExecuteTask]]] = {}
        for message in messages:
            version = schema_version(message)
            assert version is not None, "an Infinitic message without schema version"
            self.stats.writer_versions.add(version)
            writer = self.writers.lookup(message.topic_name(), version)
            task = env.decode_execute_task(message.data(), writer)
            groups.setdefault((task.method_name, task.batch_key()), []).append((message, task))
        pending: list[bytes] = []
        for (method, key), items in groups.items():
            for _, task in items:
                pending.append(env.encode_task_event(outcomes.started(task, self.name)))
            self._send(self.events, pending)
            pending.clear()
            self.stats.batches.append((method, key, len(items)))
            try:
                args = {t.task_id: values.decode_args(t.method_parameters, [str])[0] for _, t in items}
                results = self.handler(method, key, args)
            except Exception as exc:
                for _, task in items:
                    self._fail_or_retry(task, exc)
            else:
                for _, task in items:
                    done = outcomes.completed(task, values.encode_value(results[task.task_id]), self.name)
                    pending.append(env.encode_task_event(done))
                self._send(self.events, pending)
                pending.clear()
            self.stats.tasks += len(items)
            for message, _ in items:
                self.consumer.acknowledge(message)

    def _fail_or_retry(self, task: env.ExecuteTask, exc: BaseException) -> None:
        delay = self.retry_policy(task, exc)
        error = outcomes.worker_error(task, exc, self.name, seconds_before_retry=delay)
        if delay is None:
            self.stats.failures += 1
            self._send(self.events, [env.encode_task_event(outcomes.failed(task, error, self.name))])
            return
        self.stats.retries += 1
        next_attempt, retried = outcomes.retry(task, error, delay, self.name)
        self.retries.send(
            env.encode_execute_task(next_attempt), deliver_after=timedelta(seconds=delay)
        )
        self._send(self.events, [env.encode_task_event(retried)])

    @staticmethod
    def _send(producer: pulsar.Producer, payloads: list[bytes]) -> None:
        failures: list[object] = []
        for payload in payloads:
            producer.send_async(payload, lambda res, _id: failures.append(res) if res != pulsar.Result.Ok else None)
        producer.flush()
        if failures:
            raise RuntimeError(f"send failed: {failures}")
