"""``Worker.add_service(..., wire="infinitic", event_handler=True)`` on memory://: the golden
JVM ExecuteTask runs through the unchanged executor, its events are published on task-events,
and the relay turns the completion into the workflow engine's message (keyed by workflow id)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fastavro", reason="the `infinitic` extra (fastavro) is not installed")

from infinitic_py import task
from infinitic_py.config import config_from_dict
from infinitic_py.transport.base import OutgoingMessage, SubscriptionType
from infinitic_py.transport.memory import MemoryTransport, get_broker, reset_broker
from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic import values
from infinitic_py.wire.infinitic.dialect import InfiniticDialect
from infinitic_py.worker import Worker

SAMPLE = (Path(__file__).resolve().parents[2].parent / "shared" / "infinitic" / "samples"
          / "task-executor-BenchService-EXECUTE_TASK-1.bin")
NS = "persistent://public/infinitic"


class BenchService:
    @task
    def echo(self, message: str) -> str:
        return message.upper()


async def test_worker_serves_the_infinitic_wire_and_plays_the_event_handler() -> None:
    if not SAMPLE.is_file():
        pytest.skip(f"no Infinitic golden sample at {SAMPLE}")
    golden = env.decode_execute_task(SAMPLE.read_bytes())  # the JVM golden: echo("m1")
    requester = golden.requester
    assert isinstance(requester, env.WorkflowRequester)
    name = f"inf-{uuid.uuid4().hex[:8]}"
    url = f"memory://{name}"
    broker = get_broker(name)
    probe = MemoryTransport(url)
    engine = f"{NS}/workflow-engine:{requester.workflow_name}"
    await probe.ensure_subscription(engine, "test", SubscriptionType.SHARED)
    worker = Worker(url, name="py")
    worker.add_service(BenchService(), wire="infinitic", namespace="infinitic",
                       event_handler=True)
    await worker.start()
    try:
        producer = await probe.create_producer(f"{NS}/task-executor:BenchService")
        await producer.send(OutgoingMessage(SAMPLE.read_bytes()))
        deadline = asyncio.get_running_loop().time() + 10
        while broker.subscription_counts(engine, "test")[0] < 1:
            assert asyncio.get_running_loop().time() < deadline, "no workflow-engine message"
            await asyncio.sleep(0.01)
    finally:
        await worker.stop(grace=1.0)
    (message,) = broker.peek(engine, "test")
    from infinitic_py.wire.infinitic.envelopes import _read
    from infinitic_py.wire.infinitic.schemas import Envelope

    record = _read(Envelope.WORKFLOW_ENGINE, message.data, None)
    assert record["type"] == "TASK_COMPLETED"
    value = record["taskCompleted"]["taskReturnValue"]["returnValue"]
    assert values.decode_value(env.SerializedData(value["bytes"], value["type"], value["meta"]),
                               str) == "M1"
    await probe.close()
    reset_broker(name)


def test_config_wire_infinitic_per_service() -> None:
    config = config_from_dict({
        "pulsar": {"url": "memory://cfg"},
        "services": [{"class": f"{__name__}:BenchService", "wire": "infinitic",
                      "tenant": "public", "namespace": "infinitic", "event_handler": True}],
    })
    worker = Worker.from_config(config)
    (_, settings, dialect) = worker._services[0]
    assert isinstance(dialect, InfiniticDialect) and dialect.handlers
    assert (settings.tenant, settings.namespace) == ("public", "infinitic")
    with pytest.raises(Exception, match="wire"):
        config_from_dict({"services": [{"class": f"{__name__}:BenchService", "wire": "grpc"}]})


async def test_a_task_without_requester_is_dead_lettered_once_and_its_run_completes() -> None:
    """A requester-less ExecuteTask next to a good one: the good one completes, the orphan is
    dead-lettered once (reason undecodable). Before: 'unit.crashed' at every delivery."""
    import msgspec

    from infinitic_py.wire.infinitic import outcomes

    name = f"inf-{uuid.uuid4().hex[:8]}"
    url = f"memory://{name}"
    broker = get_broker(name)
    probe = MemoryTransport(url)
    events, dlq = f"{NS}/task-events:BenchService", f"{NS}/task-executor-dlq:BenchService"
    await probe.ensure_subscription(events, "test", SubscriptionType.SHARED)
    worker = Worker(url, name="py")
    worker.add_service(BenchService(), wire="infinitic", namespace="infinitic")
    await worker.start()
    try:
        producer = await probe.create_producer(f"{NS}/task-executor:BenchService")
        good = outcomes.client_task("BenchService", "echo", [values.encode_value("ok")], "c")
        orphan = msgspec.structs.replace(
            outcomes.client_task("BenchService", "echo", [values.encode_value("x")], "c"),
            requester=None)
        await producer.send(OutgoingMessage(env.encode_execute_task(orphan)))
        await producer.send(OutgoingMessage(env.encode_execute_task(good)))
        deadline = asyncio.get_running_loop().time() + 10
        while (broker.subscription_counts(events, "test")[0] < 2
               or broker.subscription_counts(dlq, "infinitic-py-dlq")[0] < 1):
            assert asyncio.get_running_loop().time() < deadline, "no completion or no dead letter"
            await asyncio.sleep(0.01)
    finally:
        await worker.stop(grace=1.0)
    kinds = [type(env.decode_task_event(m.data)).__name__ for m in broker.peek(events, "test")]
    assert kinds == ["TaskStartedEvent", "TaskCompletedEvent"]
    (letter,) = broker.peek(dlq, "infinitic-py-dlq")
    assert letter.properties["reason"] == "undecodable"
    assert "no requester" in letter.properties["errorMessage"]
    await probe.close()
    reset_broker(name)
