"""``infinitic-py dlq replay`` brings a JVM workflow's dead-lettered tasks back to it: a genuine
Infinitic 0.18.4 KeyedBenchWorkflow (``keyed-only.yml``: the JVM plays nothing of BenchService)
dispatches echo tasks; an executor that can never settle them nacks each one until Pulsar's
dead-letter policy moves it to task-executor-dlq:BenchService (as the JVM's or the worker's own
consumer would, with ``max_redeliveries``); then a Python worker serves BenchService (and its
event relay) and the operator replays the letters. The workflow completes with every result
right: the replayed tasks kept what the workflow waits on (task ids, requester, arguments).

Before: ``dlq list`` read those letters as ``unreadable`` and ``dlq replay`` skipped them all
("without a decodable task"): the workflow waited for ever."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import structlog

from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import DLQ_SUBSCRIPTION
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import ConsumerSettings
from infinitic_py.wire.infinitic.dialect import InfiniticDialect
from infinitic_py.worker.consumers import Consumers
from tests.integration.conftest import BrokerInfo
from tests.integration.test_dlq_cli import acli

from .conftest import StartJvm
from .namespaces import TENANT
from .test_dlq_tools import _tool
from .test_product import BenchService, _serve, _worker

pytestmark = pytest.mark.timeout(1200)  # the first JVM test of a session may build the example
TASKS = 6


async def _dead_letter_everything(broker: BrokerInfo, admin: PulsarAdmin, namespace: str) -> None:
    """Play an executor of BenchService that nacks every task (max_redeliveries=1) until the
    broker has moved ``TASKS`` of them to task-executor-dlq:BenchService."""
    dialect = InfiniticDialect(TENANT, namespace)
    for topic, partitions in dialect.topics("BenchService").items():
        admin.ensure_topic(topic, partitions)
    transport = create_transport(broker.service_url)
    consumers = Consumers(dialect.subscriptions("BenchService")[:1],
                          ConsumerSettings(max_redeliveries=1, nack_redelivery_delay=0.1),
                          "py-nacker", structlog.get_logger("test"))
    dlq = dialect.dead_letter_topic("BenchService")
    try:
        await consumers.subscribe(transport)  # also the durable infinitic-py-dlq subscription
        (consumer,) = list(consumers)
        deadline = time.monotonic() + 120
        while admin.subscription_counts(dlq, DLQ_SUBSCRIPTION)[0] < TASKS:
            assert time.monotonic() < deadline, admin.subscription_counts(dlq, DLQ_SUBSCRIPTION)
            try:
                msgs = await asyncio.wait_for(consumer.receive_many(100), 0.5)
            except TimeoutError:
                continue
            consumer.negative_acknowledge(msgs)
    finally:
        await consumers.close()
        await transport.close()


async def test_replayed_dead_letters_reach_the_waiting_jvm_workflow(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, admin: PulsarAdmin, interop_namespace: str
) -> None:
    runner = start_jvm("workflows=1", f"per={TASKS}", "keys=2", "timeout=400",
                       "file=keyed-only.yml", main="bench.KeyedKt")
    await asyncio.to_thread(runner.wait_for, r"waiting for an external executor", 300)
    await _dead_letter_everything(pulsar_broker, admin, interop_namespace)

    listed: dict[str, Any] = await _tool(pulsar_broker, interop_namespace, "dlq", "list",
                                         "BenchService")
    assert listed["count"] == TASKS, listed
    assert {x["method"] for x in listed["letters"]} == {"echo"}
    assert {x["reason"] for x in listed["letters"]} == {"max_redeliveries"}
    assert {x["requester"]["workflow"] for x in listed["letters"]} == {"KeyedBenchWorkflow"}
    assert len({x["task_id"] for x in listed["letters"]}) == TASKS
    status = await _tool(pulsar_broker, interop_namespace, "status", "--service", "BenchService")
    assert status["services"][0]["dead_letters"] == TASKS, status

    service = BenchService()
    worker = _worker(pulsar_broker, interop_namespace, service, event_handler=True)
    serving = asyncio.ensure_future(_serve(worker, runner, 300))
    try:
        out = await acli(pulsar_broker, "dlq", "replay", "BenchService", "--tenant", TENANT,
                         "--namespace", interop_namespace)
        assert out.returncode == 0, out.stderr
        assert f"replayed {TASKS} task(s)" in out.stdout, out.stdout
        code = await serving
    finally:
        if not serving.done():
            serving.cancel()
    assert code == 0, runner.tail()
    assert "every result correct" in runner.output()
    assert sum(n for _, n in service.batches) == TASKS
    left = await _tool(pulsar_broker, interop_namespace, "dlq", "list", "BenchService")
    assert left["count"] == 0, left
