"""``infinitic-py dlq`` and ``status`` on the dead letters of a ``wire: infinitic`` service, on the
real broker: a namespace with Infinitic's policies, letters on the JVM's three dead-letter
topics as the broker and the worker write them (golden JVM messages, with the Avro schema).

Before: ``dlq list`` read the Infinitic task as ``unreadable`` (no id, no method, not
replayable) and never read task-events-dlq:S; ``status`` counted task-executor-dlq:S only."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulsar
import pytest

from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import DLQ_SUBSCRIPTION
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import OutgoingMessage, SubscriptionType
from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic.dialect import InfiniticDialect
from infinitic_py.wire.infinitic.schemas import Envelope, definition
from tests.integration.conftest import BrokerInfo
from tests.integration.test_dlq_cli import acli

from . import jvm
from .namespaces import TENANT, jvm_like_namespace

pytestmark = pytest.mark.timeout(180)

SAMPLES = jvm.SHARED / "samples"
S = "BenchService"  # the golden messages' service


def _sample(name: str) -> bytes:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"no Infinitic golden sample at {path}")
    return path.read_bytes()


@pytest.fixture
def namespace(admin: PulsarAdmin) -> Iterator[str]:
    with jvm_like_namespace(admin, "py-dlqtools") as name:
        yield name


async def _tool(broker: BrokerInfo, namespace: str, *args: str) -> Any:
    out = await acli(broker, *args, "--tenant", TENANT, "--namespace", namespace, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _take(service_url: str, topic: str, subscription: str) -> pulsar.Message:
    """The one message kept on ``subscription`` of ``topic`` (acked)."""
    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        consumer = client.subscribe(topic, subscription, consumer_type=pulsar.ConsumerType.Shared,
                                    initial_position=pulsar.InitialPosition.Earliest)
        msg = consumer.receive(15_000)
        consumer.acknowledge(msg)
        return msg
    finally:
        client.close()


async def test_list_show_status_replay_and_purge_infinitic_letters(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, namespace: str
) -> None:
    dialect = InfiniticDialect(TENANT, namespace, handlers=True)
    for topic, partitions in dialect.topics(S).items():
        admin.ensure_topic(topic, partitions)
    task_bytes = _sample("task-executor-BenchService-EXECUTE_TASK-1.bin")
    event_bytes = _sample("task-events-BenchService-TASK_COMPLETED-1.bin")
    task = env.decode_execute_task(task_bytes)
    event = env.decode_task_event(event_bytes)
    executor_dlq = dialect.dead_letter_topic(S)
    events_dlq = dialect.topic("task-events-dlq", S)
    transport = create_transport(pulsar_broker.service_url)
    try:
        for topic in (executor_dlq, events_dlq):
            # what the worker does at start: the durable subscription before anything lands
            await transport.ensure_subscription(topic, DLQ_SUBSCRIPTION, SubscriptionType.SHARED)
        letters = await transport.create_producer(executor_dlq,
                                                  schema=definition(Envelope.TASK_EXECUTOR))
        # as Pulsar moves a message nacked max_redeliveries times: its bytes, two properties
        await letters.send(OutgoingMessage(task_bytes, {"REAL_TOPIC": "x", "ORIGIN_MESSAGE_ID": "1:2"}))
        # as the worker writes a message it cannot read (InfiniticDialect.undecodable)
        await letters.send(OutgoingMessage(b"\x02garbage", {
            "reason": "undecodable", "errorType": "WireDecodeError", "errorMessage": "bad"}))
        await letters.close()
        events = await transport.create_producer(events_dlq, schema=definition(Envelope.TASK_EVENTS))
        await events.send(OutgoingMessage(event_bytes))
        await events.close()
    finally:
        await transport.close()

    listed = await _tool(pulsar_broker, namespace, "dlq", "list", S)
    assert listed["count"] == 3, listed
    by_kind = {x["kind"]: x for x in listed["letters"]}
    assert set(by_kind) == {"task", "event", "unreadable"}
    moved = by_kind["task"]
    assert (moved["task_id"], moved["method"], moved["retry_index"], moved["reason"],
            moved["wire"]) == (task.task_id, "echo", task.task_retry_index, "max_redeliveries",
                               "infinitic")
    assert isinstance(task.requester, env.WorkflowRequester)
    assert moved["requester"]["workflow_id"] == task.requester.workflow_id
    assert moved["failed_at"] != "-"
    assert by_kind["event"]["task_id"] == event.task_id
    assert by_kind["event"]["event"] == "TaskCompletedEvent"
    assert by_kind["unreadable"]["reason"] == "undecodable"

    (shown,) = await _tool(pulsar_broker, namespace, "dlq", "show", S, task.task_id)
    assert shown["args"] == ["m1"] and shown["meta"] is not None

    status = await _tool(pulsar_broker, namespace, "status", "--service", S)
    (row,) = status["services"]
    assert row["service"] == S and row["dead_letters"] == 3, row
    assert row["topic"] == dialect.topic("task-executor", S), row  # its partitions folded

    replayed = await _tool(pulsar_broker, namespace, "dlq", "replay", S, "--task-id", task.task_id)
    assert replayed["replayed"] == 1, replayed
    msg = await asyncio.to_thread(_take, pulsar_broker.service_url,
                                  dialect.topic("task-executor", S), "task-executor-subscription")
    attempt = env.decode_execute_task(msg.data())
    assert (attempt.task_id, attempt.requester, attempt.method_parameters) == (
        task.task_id, task.requester, task.method_parameters)
    assert (attempt.task_retry_sequence, attempt.task_retry_index) == (
        task.task_retry_sequence + 1, 0)
    replayed = await _tool(pulsar_broker, namespace, "dlq", "replay", S, "--task-id", event.task_id)
    assert replayed["replayed"] == 1, replayed
    relayed = await asyncio.to_thread(_take, pulsar_broker.service_url,
                                      dialect.topic("task-events", S), "task-events-subscription")
    assert env.decode_task_event(relayed.data()) == event

    left = await _tool(pulsar_broker, namespace, "dlq", "list", S)
    assert [x["reason"] for x in left["letters"]] == ["undecodable"]
    purged = await _tool(pulsar_broker, namespace, "dlq", "purge", S, "--yes")
    assert purged["deleted"] == 1
    assert (await _tool(pulsar_broker, namespace, "dlq", "list", S))["count"] == 0


async def test_letters_on_a_dead_letter_topic_the_jvm_created_partitioned_are_read_and_replayed(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, namespace: str
) -> None:
    """The JVM's consumers create ``task-executor-dlq:<S>`` with 3 partitions (WIRE.md §2): a
    service that a JVM worker served before (or serves too) has its letters there. Before: the
    tool asked the admin API for the stats of a non-partitioned topic of that name, found none,
    and said there was no dead-letter topic (``count`` 0; ``status`` counted them)."""
    dialect = InfiniticDialect(TENANT, namespace, handlers=True)
    executor_dlq = dialect.dead_letter_topic(S)
    for topic, partitions in dialect.topics(S).items():
        admin.ensure_topic(topic, 3 if topic == executor_dlq else partitions)
    task_bytes = _sample("task-executor-BenchService-EXECUTE_TASK-1.bin")
    task = env.decode_execute_task(task_bytes)
    transport = create_transport(pulsar_broker.service_url)
    try:
        await transport.ensure_subscription(executor_dlq, DLQ_SUBSCRIPTION, SubscriptionType.SHARED)
        letters = await transport.create_producer(executor_dlq,
                                                  schema=definition(Envelope.TASK_EXECUTOR))
        await letters.send(OutgoingMessage(task_bytes, {"REAL_TOPIC": "x"}))
        await letters.close()
    finally:
        await transport.close()

    status = await _tool(pulsar_broker, namespace, "status", "--service", S)
    assert status["services"][0]["dead_letters"] == 1, status
    listed = await _tool(pulsar_broker, namespace, "dlq", "list", S)
    assert [x["task_id"] for x in listed["letters"]] == [task.task_id], listed
    replayed = await _tool(pulsar_broker, namespace, "dlq", "replay", S, "--task-id", task.task_id)
    assert replayed["replayed"] == 1, replayed
    msg = await asyncio.to_thread(_take, pulsar_broker.service_url,
                                  dialect.topic("task-executor", S), "task-executor-subscription")
    assert env.decode_execute_task(msg.data()).task_id == task.task_id
    assert (await _tool(pulsar_broker, namespace, "dlq", "list", S))["count"] == 0


async def test_a_wire_infinitic_service_of_the_config_and_what_replay_says_it_replayed(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, namespace: str, tmp_path: Path
) -> None:
    """`-c worker.yaml` declaring the service (`wire: infinitic`, its namespace) is enough: no
    `--namespace`. Before: the tool looked in public/default (0 letters), and `replay` of a task
    event said "replayed 1 task(s)"."""
    dialect = InfiniticDialect(TENANT, namespace, handlers=True)
    for topic, partitions in dialect.topics(S).items():
        admin.ensure_topic(topic, partitions)
    task = env.decode_execute_task(_sample("task-executor-BenchService-EXECUTE_TASK-1.bin"))
    event_bytes = _sample("task-events-BenchService-TASK_COMPLETED-1.bin")
    event = env.decode_task_event(event_bytes)
    transport = create_transport(pulsar_broker.service_url)
    try:
        for topic, schema, data in (
                (dialect.dead_letter_topic(S), Envelope.TASK_EXECUTOR,
                 _sample("task-executor-BenchService-EXECUTE_TASK-1.bin")),
                (dialect.topic("task-events-dlq", S), Envelope.TASK_EVENTS, event_bytes)):
            await transport.ensure_subscription(topic, DLQ_SUBSCRIPTION, SubscriptionType.SHARED)
            producer = await transport.create_producer(topic, schema=definition(schema))
            await producer.send(OutgoingMessage(data))
            await producer.close()
    finally:
        await transport.close()
    config = tmp_path / "worker.yaml"
    config.write_text(f"services:\n  - class: bench:NotImportedByTheTools\n    name: {S}\n"
                      f"    wire: infinitic\n    tenant: {TENANT}\n    namespace: {namespace}\n")

    async def tool(*args: str) -> str:
        out = await acli(pulsar_broker, *args, "-c", str(config))
        assert out.returncode == 0, out.stderr
        return out.stdout

    listed = json.loads(await tool("dlq", "list", S, "--json"))
    assert sorted(x["kind"] for x in listed["letters"]) == ["event", "task"], listed
    dry = await tool("dlq", "replay", S, "--dry-run")
    assert f"would replay 1 task(s) to {S} as new attempts and 1 event(s) unchanged" in dry, dry
    events_only = await tool("dlq", "replay", S, "--task-id", event.task_id)
    assert "replayed 1 event(s) unchanged" in events_only, events_only
    assert "task(s)" not in events_only.splitlines()[-1], events_only
    relayed = await asyncio.to_thread(_take, pulsar_broker.service_url,
                                      dialect.topic("task-events", S), "task-events-subscription")
    assert env.decode_task_event(relayed.data()) == event
    rest = json.loads(await tool("dlq", "replay", S, "--json"))
    assert (rest["replayed"], rest["tasks"], rest["events"]) == (1, 1, 0), rest
    assert rest["task_ids"] == [task.task_id]
