"""The product's Infinitic executor at the broker's limits, on the real broker (no JVM needed):
tasks sent as a Python client would (``outcomes.client_task``) to a worker in a namespace with
Infinitic's policies; the test reads ``task-events:<S>`` as the JVM's event handler would."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pulsar
import pytest

from infinitic_py import task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.transport.pulsar_schemas import RawAvroSchema
from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic import outcomes, values
from infinitic_py.wire.infinitic.schemas import Envelope, definition
from infinitic_py.worker import Worker
from tests.integration.conftest import BrokerInfo

from .namespaces import TENANT, jvm_like_namespace, quote

pytestmark = pytest.mark.timeout(120)


class BigService:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()

    @task
    def echo(self, message: str) -> str:
        with self._lock:
            self.calls.append(message)
        return message * (3_000_000 if message == "big" else 1)  # ~6 MB of JSON for "big"


@pytest.fixture
def namespace(admin: PulsarAdmin) -> Iterator[str]:
    with jvm_like_namespace(admin, "py-lim") as name:
        yield name


async def test_a_result_too_large_for_a_pulsar_message_fails_its_task_once(
    pulsar_broker: BrokerInfo, namespace: str
) -> None:
    """Before: the TaskCompletedEvent was refused (MessageTooBig), the unit nacked and re-run
    (11 executions, 11 TaskStartedEvents in 30 s, no terminal event) until Pulsar dead-lettered
    it: the JVM workflow was never told. Now: one TaskFailedEvent saying why; the small task of
    the same run completes."""
    service = BigService()
    worker = Worker(pulsar_broker.service_url, admin_url=pulsar_broker.admin_url, name="py-lim")
    worker.add_service(service, name="BenchService", wire="infinitic", tenant=TENANT,
                       namespace=namespace)
    await worker.start()
    client = pulsar.Client(pulsar_broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        base = f"persistent://{TENANT}/{namespace}"
        events = client.subscribe(f"{base}/task-events:BenchService", "probe",
                                  consumer_type=pulsar.ConsumerType.Shared,
                                  schema=RawAvroSchema(definition(Envelope.TASK_EVENTS)))
        producer = client.create_producer(f"{base}/task-executor:BenchService",
                                          schema=RawAvroSchema(definition(Envelope.TASK_EXECUTOR)))
        ids = {}
        for message in ("small", "big"):
            sent = outcomes.client_task("BenchService", "echo", [values.encode_value(message)], "py-c")
            ids[sent.task_id] = message
            producer.send(env.encode_execute_task(sent))
        terminal: dict[str, env.AnyTaskEvent] = {}
        deadline = time.monotonic() + 60
        while len(terminal) < 2:
            assert time.monotonic() < deadline, (terminal, service.calls)
            try:
                msg = await asyncio.to_thread(events.receive, 500)
            except pulsar.Timeout:
                continue
            event = env.decode_task_event(msg.data())
            events.acknowledge(msg)
            if isinstance(event, env.TaskCompletedEvent | env.TaskFailedEvent):
                terminal[ids[event.task_id]] = event
        small, big = terminal["small"], terminal["big"]
        assert isinstance(small, env.TaskCompletedEvent)
        assert values.decode_value(small.return_value, str) == "small"
        assert isinstance(big, env.TaskFailedEvent)
        exception = big.execution_error.exception
        assert exception is not None and exception.message is not None
        assert exception.name.endswith("ValueMappingError")
        assert "exceeds a Pulsar message" in exception.message
        assert sorted(service.calls) == ["big", "small"]  # once each: no nack loop
    finally:
        client.close()
        await worker.stop(grace=2.0)


def _backlog(admin: PulsarAdmin, namespace: str, local: str, subscription: str) -> tuple[int, int]:
    stats = admin.get_json(f"/admin/v2/persistent/{TENANT}/{namespace}/{quote(local)}/partitioned-stats")
    sub = stats["subscriptions"][subscription]
    return int(sub["msgBacklog"]), int(sub["unackedMessages"])


async def test_an_answer_to_a_client_whose_response_topic_is_gone_is_dropped(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, namespace: str
) -> None:
    """With ``event_handler=True``, a completion for a client that closed (its response topic
    deleted; auto topic creation off) is dropped with a warning, as the JVM's handler does.
    Before: relay.publish_failed every nack delay, the run (other clients' answers with it)
    re-relayed until Pulsar dead-lettered it."""
    base = f"persistent://{TENANT}/{namespace}"
    admin.ensure_topic(f"{base}/response:alive", 0)
    worker = Worker(pulsar_broker.service_url, admin_url=pulsar_broker.admin_url, name="py-gone")
    worker.add_service(BigService(), name="BenchService", wire="infinitic", tenant=TENANT,
                       namespace=namespace, event_handler=True)
    await worker.start()
    client = pulsar.Client(pulsar_broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        alive = client.subscribe(f"{base}/response:alive", "r",
                                 schema=RawAvroSchema(definition(Envelope.CLIENT)))
        producer = client.create_producer(f"{base}/task-executor:BenchService",
                                          schema=RawAvroSchema(definition(Envelope.TASK_EXECUTOR)))
        for name in ("gone", "alive"):
            producer.send(env.encode_execute_task(
                outcomes.client_task("BenchService", "echo", [values.encode_value(name)], name)))
        msg = await asyncio.to_thread(alive.receive, 30_000)
        kind, answer = env.decode_client_message(msg.data())
        assert kind == "TASK_COMPLETED" and isinstance(answer, env.ClientTaskCompleted)
        assert values.decode_value(answer.task_return_value, str) == "alive"
        deadline = time.monotonic() + 8
        while _backlog(admin, namespace, "task-events:BenchService", "task-events-subscription") != (0, 0):
            assert time.monotonic() < deadline, _backlog(
                admin, namespace, "task-events:BenchService", "task-events-subscription")
            await asyncio.sleep(0.2)
    finally:
        client.close()
        await worker.stop(grace=2.0)
