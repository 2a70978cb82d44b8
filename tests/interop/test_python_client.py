"""A Python requester awaits results from a JVM-served Infinitic service (codec + pulsar-client).

The JVM runs ``mode=serve file=all.yml``: BenchService's executor (``@Batch`` twin, batch 100 /
1 s) and its event handler. Python sends ``ExecuteTask`` with a ``ClientRequester`` and
``clientWaiting=true`` to ``task-executor:BenchService``; the JVM's event handler answers each
task with a ``ClientEnvelope`` on ``response:<clientName>``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pulsar
import pytest

from infinitic_py.admin import PulsarAdmin, PulsarAdminError
from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic import outcomes, values
from infinitic_py.wire.infinitic.registry import (
    InfiniticSchema,
    WriterSchemas,
    native_fetcher,
    schema_version,
)
from infinitic_py.wire.infinitic.schemas import Envelope
from tests.integration.conftest import BrokerInfo

from .conftest import StartJvm
from .namespaces import TENANT, quote, wait_consumer

CLIENT = "py-client-1"
N = 1000

# the first JVM test of a session may build the example (cold ~/.m2: ~130 MB of downloads + kotlinc)
pytestmark = pytest.mark.timeout(1200)



@pytest.fixture
def client(pulsar_broker: BrokerInfo) -> Iterator[pulsar.Client]:
    c = pulsar.Client(pulsar_broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    yield c
    c.close()


def _ensure(admin: PulsarAdmin, namespace: str, local: str, partitions: int | None) -> None:
    path = f"/admin/v2/persistent/{TENANT}/{namespace}/{quote(local)}"
    try:
        if partitions is None:
            admin.put_json(path, {})
        else:
            admin.put_json(f"{path}/partitions", partitions)
    except PulsarAdminError as exc:
        if exc.status != 409:
            raise


def test_python_client_awaits_results_of_a_jvm_service(
    start_jvm: StartJvm, admin: PulsarAdmin, client: pulsar.Client, interop_namespace: str
) -> None:
    """``methodParameterTypes`` is required here: without it the JVM cannot choose between
    ``echo(String)`` and its ``@Batch`` twin ``echo(Map)`` (``TooManyMethodsFoundWithParameter
    CountException``, and the message is nacked, not answered)."""
    runner = start_jvm("mode=serve", "file=all.yml")
    runner.wait_for(r"SERVING", timeout=180)
    wait_consumer(admin, interop_namespace, "task-executor:BenchService", "task-executor-subscription", 180)
    wait_consumer(admin, interop_namespace, "task-events:BenchService", "task-events-subscription", 180)
    base = f"persistent://{TENANT}/{interop_namespace}"
    _ensure(admin, interop_namespace, f"response:{CLIENT}", None)  # the client owns its topic
    _ensure(admin, interop_namespace, "task-executor:BenchService", 3)
    responses = client.subscribe(
        f"{base}/response:{CLIENT}",
        "response-subscription",
        consumer_type=pulsar.ConsumerType.Shared,
        schema=InfiniticSchema(Envelope.CLIENT),
        initial_position=pulsar.InitialPosition.Earliest,
    )
    producer = client.create_producer(
        f"{base}/task-executor:BenchService", schema=InfiniticSchema(Envelope.TASK_EXECUTOR)
    )
    expected: dict[str, str] = {}
    for i in range(N):
        task = outcomes.client_task(
            "BenchService", "echo", [values.encode_value(f"v{i}")], CLIENT,
            parameter_types=["java.lang.String"], meta={"batchKey": f"k{i % 10}".encode()},
        )  # fmt: skip
        expected[task.task_id] = f"v{i}"
        producer.send_async(env.encode_execute_task(task), None)
    producer.flush()

    writers = WriterSchemas(native_fetcher(client))
    got: dict[str, str] = {}
    deadline = time.monotonic() + 180
    while len(got) < N:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(got)}/{N} responses after 180 s:\n{runner.tail()}")
        try:
            message = responses.receive(1000)
        except pulsar.Timeout:
            continue
        version = schema_version(message)
        assert version is not None
        kind, answer = env.decode_client_message(message.data(), writers.lookup(message.topic_name(), version))
        assert isinstance(answer, env.ClientTaskCompleted), (kind, answer)
        assert answer.recipient_name == CLIENT
        got[answer.task_id] = values.decode_value(answer.task_return_value, str)
        responses.acknowledge(message)
    assert got == expected
    body = admin.get_json(f"/admin/v2/schemas/{TENANT}/{interop_namespace}/{quote(f'response:{CLIENT}')}/schemas")
    assert [v["version"] for v in body["getSchemaResponses"]] == [0]  # JVM reused Python's
