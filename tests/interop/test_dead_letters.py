"""Unreadable and poisoned messages on Infinitic's topics, on the real broker (no JVM needed): a
namespace with Infinitic's policies (schemas enforced, auto topic creation off, as the JVM sets
it). Each such message is dead-lettered exactly once, on a topic the worker created, with its
reason: never a redelivery loop, never a message stuck in a subscription."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pulsar
import pytest
import structlog

from infinitic_py import task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import DLQ_SUBSCRIPTION
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import ConsumerSettings, OutgoingMessage
from infinitic_py.transport.pulsar_schemas import RawAvroSchema
from infinitic_py.wire.infinitic.dialect import InfiniticDialect
from infinitic_py.wire.infinitic.schemas import Envelope, definition
from infinitic_py.worker import Worker
from infinitic_py.worker.consumers import Consumers
from tests.integration.conftest import BrokerInfo

from .namespaces import TENANT, jvm_like_namespace, quote

pytestmark = pytest.mark.timeout(120)


class BenchService:
    @task
    def echo(self, message: str) -> str:
        return message


@pytest.fixture
def namespace(admin: PulsarAdmin) -> Iterator[str]:
    with jvm_like_namespace(admin, "py-dlq") as name:
        yield name


def _letters(client: pulsar.Client, topic: str, at_least: int, timeout: float) -> list[pulsar.Message]:
    """The letters kept on ``topic`` (its ``infinitic-py-dlq`` subscription), read without acking:
    polls until ``at_least`` arrived, then reads on for a moment (a second copy would show)."""
    consumer = client.subscribe(topic, DLQ_SUBSCRIPTION, consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest)
    got: list[pulsar.Message] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                got.append(consumer.receive(300))
            except pulsar.Timeout:
                if len(got) >= at_least:
                    break
    finally:
        consumer.close()
    return got


def _backlog(admin: PulsarAdmin, namespace: str, local: str, subscription: str) -> tuple[int, int]:
    stats = admin.get_json(f"/admin/v2/persistent/{TENANT}/{namespace}/{quote(local)}/partitioned-stats")
    sub = stats["subscriptions"][subscription]
    return int(sub["msgBacklog"]), int(sub["unackedMessages"])


async def test_garbage_on_each_infinitic_topic_is_dead_lettered_once_with_its_reason(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, namespace: str
) -> None:
    """A worker playing the executor and both handler roles; one unreadable payload on
    task-executor, task-retry and task-events each. Before: the task-events one was nacked for
    ever (relay.unreadable every nack delay: the broker's dead-letter topic
    `task-events:S-partition-N-task-events-subscription-DLQ` cannot be auto-created)."""
    worker = Worker(pulsar_broker.service_url, admin_url=pulsar_broker.admin_url, name="py-dlq")
    worker.add_service(BenchService(), wire="infinitic", tenant=TENANT, namespace=namespace,
                       event_handler=True)
    await worker.start()
    client = pulsar.Client(pulsar_broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        for prefix, envelope in (("task-executor", Envelope.TASK_EXECUTOR),
                                 ("task-retry", Envelope.TASK_EXECUTOR),
                                 ("task-events", Envelope.TASK_EVENTS)):
            producer = client.create_producer(f"persistent://{TENANT}/{namespace}/{prefix}:BenchService",
                                              schema=RawAvroSchema(definition(envelope)))
            producer.send(b"\x02garbage on " + prefix.encode())
            producer.close()
        for prefix in ("task-executor", "task-retry", "task-events"):
            dlq = f"persistent://{TENANT}/{namespace}/{prefix}-dlq:BenchService"
            letters = await asyncio.to_thread(_letters, client, dlq, 1, 30)
            assert [m.data() for m in letters] == [b"\x02garbage on " + prefix.encode()], prefix
            props = letters[0].properties()
            assert props["reason"] == "undecodable" and props["errorMessage"], props
        for prefix, sub in (("task-executor", "task-executor-subscription"),
                            ("task-retry", "task-retry-subscription"),
                            ("task-events", "task-events-subscription")):
            deadline = time.monotonic() + 10
            while _backlog(admin, namespace, f"{prefix}:BenchService", sub) != (0, 0):
                assert time.monotonic() < deadline, (prefix, _backlog(admin, namespace, f"{prefix}:BenchService", sub))
                await asyncio.sleep(0.2)
    finally:
        client.close()
        await worker.stop(grace=2.0)


async def test_a_message_nacked_too_often_reaches_the_schema_enforced_dead_letter_topic(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, namespace: str
) -> None:
    """The broker moves a message nacked ``max_redeliveries`` times with the consumer's schema.
    Once task-executor-dlq:S holds a letter written with the Avro schema (a worker's, or the
    JVM's), a schemaless consumer's move is refused (IncompatibleSchema): before, the message
    then stayed stuck in the subscription, neither redelivered nor dead-lettered."""
    dialect = InfiniticDialect(TENANT, namespace, handlers=True)
    for topic, partitions in dialect.topics("S").items():
        admin.ensure_topic(topic, partitions)
    transport = create_transport(pulsar_broker.service_url)
    dlq = dialect.dead_letter_topic("S")
    settings = ConsumerSettings(max_redeliveries=1, nack_redelivery_delay=0.1)
    consumers = Consumers(dialect.subscriptions("S")[:1], settings, "py-dlq-test",
                          structlog.get_logger("test"))
    try:
        letters = await transport.create_producer(dlq, schema=dialect.producer_schema(dlq))
        await letters.send(OutgoingMessage(b"a letter the worker wrote"))
        await consumers.subscribe(transport)
        (consumer,) = list(consumers)
        producer = await transport.create_producer(dialect.topic("task-executor", "S"),
                                                   schema=definition(Envelope.TASK_EXECUTOR))
        await producer.send(OutgoingMessage(b"poison"))
        client = pulsar.Client(pulsar_broker.service_url,
                               logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
        deliveries = 0
        deadline = time.monotonic() + 20
        moved: list[pulsar.Message] = []
        try:
            while not moved and time.monotonic() < deadline:
                try:
                    msgs = await asyncio.wait_for(consumer.receive_many(10), 1.0)
                except TimeoutError:
                    msgs = []
                if msgs:
                    deliveries += len(msgs)
                    consumer.negative_acknowledge(msgs)
                found = await asyncio.to_thread(_letters, client, dlq, 2, 1.0)
                moved = [m for m in found if m.data() == b"poison"]
        finally:
            client.close()
        assert moved, f"not dead-lettered after {deliveries} deliveries"
        assert deliveries == 2  # the first delivery and one redelivery (max_redeliveries=1)
    finally:
        await consumers.close()
        await transport.close()
