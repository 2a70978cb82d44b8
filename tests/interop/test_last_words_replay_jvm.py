"""A genuine JVM workflow told its task failed by the worker's last words (the TaskFailedEvent
sent before the nack that dead-letters the task, as the JVM's ``beforeDlq``): the workflow fails
on it with the worker's error, and the client that awaits the workflow is told so at once
(``WorkflowFailedException``), exactly as with a JVM worker; the task's letter stays replayable
(README: "When Pulsar dead-letters an Infinitic task", which said only that a later replay
resumes the workflow)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import structlog

from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import DLQ_SUBSCRIPTION
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import ConsumerSettings, SubscriptionType, TransportError
from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic.dialect import EVENTS_SUBSCRIPTION, InfiniticDialect
from infinitic_py.worker.consumers import Consumers
from tests.integration.conftest import BrokerInfo
from tests.integration.test_dlq_cli import acli

from .conftest import StartJvm
from .namespaces import TENANT
from .test_product import BenchService, _serve, _worker

pytestmark = pytest.mark.timeout(1200)
TASKS = 2


async def _tell_and_dead_letter(broker: BrokerInfo, admin: PulsarAdmin, namespace: str) -> None:
    """An executor that can never settle its tasks (max_redeliveries=1): before the last nack
    it says the worker's last words (a TaskFailedEvent on task-events:S)."""
    dialect = InfiniticDialect(TENANT, namespace)
    for topic, partitions in dialect.topics("BenchService").items():
        admin.ensure_topic(topic, partitions)
    transport = create_transport(broker.service_url)
    events = dialect.topic("task-events", "BenchService")
    await transport.ensure_subscription(events, EVENTS_SUBSCRIPTION, SubscriptionType.SHARED)
    consumers = Consumers(dialect.subscriptions("BenchService")[:1],
                          ConsumerSettings(max_redeliveries=1, nack_redelivery_delay=0.1),
                          "py-nacker", structlog.get_logger("test"))
    dlq = dialect.dead_letter_topic("BenchService")
    told: set[str] = set()
    try:
        await consumers.subscribe(transport)
        (consumer,) = list(consumers)
        producer = await transport.create_producer(
            events, schema=dialect.producer_schema(events))
        deadline = time.monotonic() + 120
        while admin.subscription_counts(dlq, DLQ_SUBSCRIPTION)[0] < TASKS:
            assert time.monotonic() < deadline, admin.subscription_counts(dlq, DLQ_SUBSCRIPTION)
            try:
                msgs = await asyncio.wait_for(consumer.receive_many(100), 0.5)
            except TimeoutError:
                continue
            for msg in msgs:
                if msg.redelivery_count >= 1:
                    task = env.decode_execute_task(msg.data, msg.writer_schema)
                    for publish in dialect.last_words(task, TransportError("refused"), "py-n"):
                        await producer.send(publish.message)
                    told.add(task.task_id)
            consumer.negative_acknowledge(msgs)
        await producer.close()
        assert len(told) == TASKS
    finally:
        await consumers.close()
        await transport.close()


async def test_a_jvm_workflow_told_its_task_failed_fails_at_once_for_its_client(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, admin: PulsarAdmin, interop_namespace: str
) -> None:
    runner = start_jvm("workflows=1", f"per={TASKS}", "keys=1", "timeout=400",
                       "file=keyed-only.yml", main="bench.KeyedKt")
    await asyncio.to_thread(runner.wait_for, r"waiting for an external executor", 300)
    await _tell_and_dead_letter(pulsar_broker, admin, interop_namespace)
    worker = _worker(pulsar_broker, interop_namespace, BenchService(), event_handler=True)
    code = await _serve(worker, runner, 300)  # its event relay delivers the TaskFailedEvents
    output = runner.output()
    assert code == 1, runner.tail()
    assert "WorkflowFailedException" in output and "TaskFailedException" in output, output
    assert "workerName='py-n'" in output and "message=refused" in output, output
    out = await acli(pulsar_broker, "dlq", "list", "BenchService", "--json", "--tenant", TENANT,
                     "--namespace", interop_namespace)
    assert out.returncode == 0, out.stderr
    letters = json.loads(out.stdout)["letters"]
    # Pulsar's client moves a message to the dead-letter topic at least once: a letter may be
    # there twice (seen once in CI: 4 letters of 2 tasks). Each task has its letter.
    assert {x["kind"] for x in letters} == {"task"}, letters
    assert len({x["task_id"] for x in letters}) == TASKS, letters
