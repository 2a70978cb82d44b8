"""The product's ``AsyncClient(wire="infinitic")`` awaits results from a JVM-served Infinitic
service.

The JVM runs ``mode=serve file=all.yml``: BenchService's executor (``@Batch`` twin, batch 100 /
1 s) and its event handler. The client sends ``ExecuteTask`` with a ``ClientRequester`` and
``clientWaiting=true`` to ``task-executor:BenchService``; the JVM's event handler answers each task
with a ``ClientEnvelope`` on ``response:<clientName>`` (created by the client over REST).
"""

from __future__ import annotations

import pytest

from infinitic_py import task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.client import AsyncClient, Call
from tests.integration.conftest import BrokerInfo

from .conftest import StartJvm
from .namespaces import TENANT, create_infinitic_namespace, quote, wait_consumer

N = 1000

pytestmark = pytest.mark.timeout(1200)  # the first JVM test of a session may build the example


class BenchService:
    """The JVM service's Python stub: its hints give ``methodParameterTypes``
    (``str`` -> ``java.lang.String``), which the JVM needs to choose between ``echo(String)``
    and its ``@Batch`` twin ``echo(Map)``."""

    @task
    def echo(self, message: str) -> str:
        raise NotImplementedError  # served by the JVM


async def test_python_client_awaits_1000_results_of_a_jvm_batch_service(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, admin: PulsarAdmin, interop_namespace: str
) -> None:
    runner = start_jvm("mode=serve", "file=all.yml")
    runner.wait_for(r"SERVING", timeout=300)
    wait_consumer(admin, interop_namespace, "task-executor:BenchService",
                  "task-executor-subscription", 180)
    wait_consumer(admin, interop_namespace, "task-events:BenchService",
                  "task-events-subscription", 180)
    async with AsyncClient(pulsar_broker.service_url, wire="infinitic", tenant=TENANT,
                           namespace=interop_namespace, admin_url=pulsar_broker.admin_url,
                           name="py-client-1") as client:
        echo = client.service(BenchService).echo
        deferreds = await echo.many(
            [Call(f"v{i}", meta={"batchKey": f"k{i % 10}".encode()}) for i in range(N)])
        results = [await d.result(timeout=180) for d in deferreds]
    assert results == [f"v{i}" for i in range(N)], runner.tail()
    body = admin.get_json(
        f"/admin/v2/schemas/{TENANT}/{interop_namespace}/{quote('task-executor:BenchService')}/schemas")
    assert [v["version"] for v in body["getSchemaResponses"]] == [0]  # Python reused the JVM's



async def test_tasks_dispatched_before_the_jvm_worker_ever_started_wait_for_it(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, admin: PulsarAdmin, interop_namespace: str
) -> None:
    """The namespace exists with Infinitic's policies (auto topic creation off) but no JVM
    worker of BenchService ever started: the client creates `task-executor:BenchService` as a JVM
    client's producer would (was: DispatchFailed ... TopicNotFound), the tasks wait, and the JVM
    worker started afterwards answers them."""
    create_infinitic_namespace(admin, interop_namespace)
    admin.post_json(f"/admin/v2/namespaces/{TENANT}/{interop_namespace}/autoTopicCreation",
                    {"allowAutoTopicCreation": False, "topicType": "partitioned",
                     "defaultNumPartitions": 3})
    async with AsyncClient(pulsar_broker.service_url, wire="infinitic", tenant=TENANT,
                           namespace=interop_namespace, admin_url=pulsar_broker.admin_url,
                           name="py-client-early") as client:
        deferreds = await client.service(BenchService).echo.many([Call(f"e{i}") for i in range(20)])
        runner = start_jvm("mode=serve", "file=all.yml")
        results = [await d.result(timeout=300) for d in deferreds]
    assert results == [f"e{i}" for i in range(20)], runner.tail()
    partitions = admin.get_json(f"/admin/v2/persistent/{TENANT}/{interop_namespace}/"
                                f"{quote('task-executor:BenchService')}/partitions")
    assert partitions["partitions"] == 3  # as the JVM creates it
