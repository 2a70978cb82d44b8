"""``infinitic-py dlq`` on the real broker: list, show, replay, purge (issue 16's acceptance)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from infinitic_py import AsyncClient, Call, Worker, task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import DLQ_SUBSCRIPTION, dead_letter_topic

from .conftest import BrokerInfo
from .harness import poll

ROOT = Path(__file__).resolve().parents[2]


class Flaky:
    """Fails by kind: ``value`` raises ValueError while ``fail_values`` is set, ``key`` always
    raises KeyError; records every task that completed."""

    def __init__(self) -> None:
        self.fail_values = True
        self.completed: list[int] = []
        self.calls: dict[str, int] = {"value": 0, "key": 0}
        self._lock = threading.Lock()

    @task
    def run(self, kind: str, n: int) -> int:
        with self._lock:
            self.calls[kind] = self.calls.get(kind, 0) + 1
        if kind == "value" and self.fail_values:
            raise ValueError(f"bad value {n}")
        if kind == "key":
            raise KeyError(f"no key {n}")
        with self._lock:
            self.completed.append(n)
        return n


def cli(broker: BrokerInfo, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INFINITIC_PULSAR__URL": broker.service_url,
           "INFINITIC_PULSAR__ADMIN_URL": broker.admin_url}
    env.pop("INFINITIC_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "infinitic_py.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


async def acli(broker: BrokerInfo, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, broker, *args)


async def letters_json(broker: BrokerInfo, service: str, *extra: str) -> dict[str, Any]:
    out = await acli(broker, "dlq", "list", service, "--json", *extra)
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


async def test_dlq_list_replay_purge(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, unique_name: str
) -> None:
    service = f"Dlq{unique_name}"
    dlq = dead_letter_topic("public", "default", service)
    flaky = Flaky()
    worker = Worker(pulsar_broker.service_url, name="dlq-test")
    worker.add_service(flaky, name=service, concurrency=4)
    await worker.start()
    try:
        async with AsyncClient(pulsar_broker.service_url, results=False) as client:
            stub = client.service(service)
            await stub.run.many([Call("value", n, meta={"batchKey": f"k{n % 2}"})
                                 for n in range(8)])
            await stub.run.many([Call("key", 100 + n) for n in range(7)])
            await stub.nope.many([Call("x", 200 + n) for n in range(5)])  # unknown method

        async def count() -> int:
            return int((await letters_json(pulsar_broker, service))["count"])

        async def unacked() -> int:  # held by a consumer right now (a dlq command's)
            return (await asyncio.to_thread(admin.subscription_counts, dlq, DLQ_SUBSCRIPTION))[1]

        assert await poll(count, lambda n: n == 20, 60, every=1.0) == 20
        listed = await letters_json(pulsar_broker, service)
        assert listed["count"] == 20
        assert listed["summary"]["error_type"] == {"ValueError": 8, "KeyError": 7,
                                                   "DecodeError": 5}
        assert listed["summary"]["reason"] == {"retries_exhausted": 15, "unknown_method": 5}
        assert {x["message"] for x in listed["letters"]} >= {"bad value 3", "'no key 101'"}
        # Listing consumed nothing and holds nothing once done.
        assert await count() == 20 and await unacked() == 0
        table = await acli(pulsar_broker, "dlq", "list", service, "--batch-key", "k1")
        assert table.returncode == 0 and "4 dead letter(s)" in table.stdout, table.stdout
        assert "ValueError" in table.stdout and "bad value 1" in table.stdout

        value_ids = {x["task_id"] for x in listed["letters"] if x["error_type"] == "ValueError"}
        shown = await acli(pulsar_broker, "dlq", "show", service, next(iter(value_ids)))
        assert shown.returncode == 0 and "Traceback" in shown.stdout and "ValueError" in shown.stdout

        flaky.fail_values = False
        calls_before = dict(flaky.calls)
        replay = await acli(pulsar_broker, "dlq", "replay", service, "--error-type", "ValueError",
                            "--json")
        assert replay.returncode == 0, replay.stderr
        result = json.loads(replay.stdout)
        assert result["replayed"] == 8 and set(result["task_ids"]) == value_ids

        def completed() -> list[int]:
            return sorted(flaky.completed)

        async def probe() -> list[int]:
            return completed()

        assert await poll(probe, lambda c: len(c) == 8, 60) == list(range(8))
        assert flaky.calls["key"] == calls_before["key"]  # only the replayed ones ran again
        assert await poll(count, lambda n: n == 12, 30, every=1.0) == 12
        left = await letters_json(pulsar_broker, service)
        assert left["count"] == 12 and "ValueError" not in left["summary"]["error_type"]

        dry = await acli(pulsar_broker, "dlq", "purge", service)
        assert dry.returncode == 0 and "would delete 12" in dry.stdout, dry.stdout
        assert await count() == 12

        purge = await acli(pulsar_broker, "dlq", "purge", service, "--error-type", "KeyError",
                           "--yes")
        assert purge.returncode == 0 and "deleted 7" in purge.stdout, purge.stdout
        assert await poll(count, lambda n: n == 5, 30, every=1.0) == 5
        rest = await letters_json(pulsar_broker, service)
        assert rest["summary"]["reason"] == {"unknown_method": 5}
    finally:
        await worker.stop()


async def test_dlq_of_an_unknown_service_reads_nothing_and_creates_no_topic(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, unique_name: str
) -> None:
    service = f"Typo{unique_name}"
    out = await acli(pulsar_broker, "dlq", "list", service)
    assert out.returncode == 0 and f"0 dead letter(s) of {service}" in out.stdout, out
    purge = await acli(pulsar_broker, "dlq", "purge", service, "--yes")
    assert purge.returncode == 0 and "deleted 0" in purge.stdout
    topics = await asyncio.to_thread(admin.topics, "public", "default")
    assert dead_letter_topic("public", "default", service) not in topics


async def test_a_bulk_dead_lettered_by_pulsar_is_replayed_whole(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, unique_name: str
) -> None:
    """An atomic bulk Pulsar moved to the DLQ (after max_redeliveries) is one message: it lists
    as one letter per task, and replay acts on it only with every task selected."""
    from infinitic_py.topics import WORKER_SUBSCRIPTION, service_topic
    from infinitic_py.transport import create_transport
    from infinitic_py.transport.base import OutgoingMessage, SubscriptionType
    from infinitic_py.wire import native as wire
    from infinitic_py.wire.bulk import bulk_message

    service = f"DlqBulk{unique_name}"
    dlq, topic = dead_letter_topic("public", "default", service), service_topic(
        "public", "default", service)
    tasks = [wire.ExecuteTask(task_id=f"{unique_name}-{i}", service=service,
                              method="first" if i == 0 else "run",
                              args=wire.encode_value(["value", i]), retry_index=2)
             for i in range(3)]
    transport = create_transport(pulsar_broker.service_url)
    try:
        await transport.ensure_subscription(dlq, DLQ_SUBSCRIPTION, SubscriptionType.SHARED)
        producer = await transport.create_producer(dlq)
        await producer.send(bulk_message([OutgoingMessage(wire.encode(t)) for t in tasks]))
        await producer.close()
    finally:
        await transport.close()

    listed = await letters_json(pulsar_broker, service)
    assert sorted(x["task_id"] for x in listed["letters"]) == [t.task_id for t in tasks]
    assert {(x["reason"], x["bulk_size"]) for x in listed["letters"]} == {("max_redeliveries", 3)}

    partial = await acli(pulsar_broker, "dlq", "replay", service, "--method", "run")
    assert partial.returncode == 0, partial.stderr
    assert "replayed 0 task(s)" in partial.stdout and "2 task(s) of an atomic bulk skipped" in (
        partial.stdout)
    assert len((await letters_json(pulsar_broker, service))["letters"]) == 3

    whole = await acli(pulsar_broker, "dlq", "replay", service, "--json")
    assert whole.returncode == 0, whole.stderr
    result = json.loads(whole.stdout)
    assert (result["replayed"], result["skipped_partial_bulk"]) == (3, 0)
    backlog = await poll(lambda: asyncio.to_thread(admin.subscription_counts, topic,
                                                   WORKER_SUBSCRIPTION),
                         lambda counts: counts[0] >= 1, 30)
    assert backlog[0] >= 1  # entries: the three new attempts, maybe in one producer batch
    assert (await letters_json(pulsar_broker, service))["letters"] == []


async def test_dlq_list_of_an_unknown_service_says_there_is_no_such_topic(
        pulsar_broker: BrokerInfo, unique_name: str) -> None:
    """A mistyped service name: the "0 dead letter(s)" line says no dead-letter topic exists."""
    out = await acli(pulsar_broker, "dlq", "list", f"Typo{unique_name}")
    assert out.returncode == 0, out
    assert f"task-executor-dlq:Typo{unique_name} topic" in out.stdout, out.stdout
    assert "mistyped name" in out.stdout
