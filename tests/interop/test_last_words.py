"""On the real broker: a ``wire: infinitic`` task whose outcomes can never be made durable is
nacked until Pulsar dead-letters it, and just before that last nack the worker tells the waiting
workflow with a ``TaskFailedEvent`` on task-events:<S> (Infinitic 0.18.4's ``beforeDlq`` hook).

The outcome made unpublishable: its retry, refused by task-retry:<S>, whose registered schema
the 0.18.4 envelope cannot be made compatible with (``IncompatibleSchema``, a refusal of the
broker's). Before: the task reached task-executor-dlq:S and nothing reached task-events:S but
its TaskStartedEvents: the workflow waited for ever."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pulsar
import pytest

from infinitic_py import task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.retry import RetryPolicy
from infinitic_py.topics import DLQ_SUBSCRIPTION
from infinitic_py.transport.base import ConsumerSettings
from infinitic_py.transport.pulsar_schemas import RawAvroSchema
from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic.dialect import InfiniticDialect
from infinitic_py.wire.infinitic.schemas import Envelope, definition
from infinitic_py.worker import Worker
from tests.integration.conftest import BrokerInfo

from .namespaces import TENANT, jvm_like_namespace, quote
from .test_dlq_tools import _sample

pytestmark = pytest.mark.timeout(120)
S = "BenchService"
_OTHER = {"type": "record", "name": "SomethingElse", "fields": [{"name": "x", "type": "string"}]}


class BenchService:
    @task
    def echo(self, message: str) -> str:
        raise ValueError("always fails: the retry is what cannot be published")


@pytest.fixture
def namespace(admin: PulsarAdmin) -> Iterator[str]:
    with jvm_like_namespace(admin, "py-words") as name:
        yield name


def _failed_events(client: pulsar.Client, topic: str, task_id: str,
                   timeout: float, *, every: bool = False) -> list[env.TaskFailedEvent]:
    """The TaskFailedEvents of ``task_id`` kept on the watch subscription: the first one
    (``every``: all those that come within ``timeout``)."""
    consumer = client.subscribe(topic, "test-watch", consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest)
    found: list[env.TaskFailedEvent] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and (every or not found):
            try:
                msg = consumer.receive(300)
            except pulsar.Timeout:
                continue
            event = env.decode_task_event(msg.data())
            if isinstance(event, env.TaskFailedEvent) and event.task_id == task_id:
                found.append(event)
    finally:
        consumer.close()
    return found


async def test_a_task_pulsar_dead_letters_is_first_told_failed(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, namespace: str
) -> None:
    dialect = InfiniticDialect(TENANT, namespace)
    for topic, partitions in dialect.topics(S).items():
        admin.ensure_topic(topic, partitions)
    admin.post_json(f"/admin/v2/schemas/{TENANT}/{namespace}/{quote('task-retry:' + S)}/schema",
                    {"type": "AVRO", "schema": json.dumps(_OTHER), "properties": {}})
    client = pulsar.Client(pulsar_broker.service_url,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    events_topic = dialect.topic("task-events", S)
    client.subscribe(events_topic, "test-watch").close()  # keep what is published from now on
    data = _sample("task-executor-BenchService-EXECUTE_TASK-1.bin")
    sent = env.decode_execute_task(data)
    worker = Worker(pulsar_broker.service_url, admin_url=pulsar_broker.admin_url, name="py-words",
                    consumer=ConsumerSettings(max_redeliveries=1, nack_redelivery_delay=0.2))
    worker.add_service(BenchService(), wire="infinitic", tenant=TENANT, namespace=namespace,
                       retry=RetryPolicy(maximum_retries=3, minimum_seconds=5.0,
                                         random_factor=0.0))
    await worker.start()
    try:
        producer = client.create_producer(dialect.topic("task-executor", S),
                                          schema=RawAvroSchema(definition(Envelope.TASK_EXECUTOR)))
        producer.send(data)
        producer.close()
        told = await asyncio.to_thread(_failed_events, client, events_topic, sent.task_id, 40)
        assert told, "no TaskFailedEvent before the broker dead-lettered the task"
        (event,) = told
        assert event.requester == sent.requester  # the workflow that waits for it
        assert event.execution_error.exception is not None
        assert "task-retry" in (event.execution_error.exception.message or ""), event
        dlq = dialect.dead_letter_topic(S)
        deadline = time.monotonic() + 20
        while admin.subscription_counts(dlq, DLQ_SUBSCRIPTION)[0] < 1:  # and then dead-lettered
            assert time.monotonic() < deadline, "the task was not dead-lettered"
            await asyncio.sleep(0.2)
        # told once: not at the earlier nack (redelivery count 0 < max_redeliveries 1)
        every = await asyncio.to_thread(_failed_events, client, events_topic, sent.task_id, 3,
                                        every=True)
        assert len(every) == 1, every
    finally:
        client.close()
        await worker.stop(grace=2.0)
