"""The PRODUCT serves Infinitic's JVM workflows: ``Worker.add_service(..., wire="infinitic")``
(the same executor as the native wire), against a genuine Infinitic 0.18.4 JVM on the project's
broker. The JVM runner exits 0 only if every workflow returned every result right.

- ``bench.KeyedKt`` (suite overlay): KeyedBenchWorkflow dispatches ``echo`` tasks with meta
  ``batchKey`` over N keys; ``config/wf.yml``-style run: the JVM plays BenchService's event and
  retry handlers, or (``keyed-only.yml``) nothing of BenchService: Python plays them
  (``event_handler=True``).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from infinitic_py import task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.context import batch_contexts, current_context
from infinitic_py.retry import RetryPolicy
from infinitic_py.worker import Worker
from tests.integration.conftest import BrokerInfo

from .conftest import StartJvm
from .namespaces import TENANT, quote

pytestmark = pytest.mark.timeout(1200)  # the first JVM test of a session may build the example


class BenchService:
    """Python twin of the JVM example's BenchService: ``echo(String): String`` and its batch."""

    def __init__(self, fail_first: int = 0, refuse: bool = False) -> None:
        self.fail_first, self.refuse = fail_first, refuse
        self.batches: list[tuple[frozenset[Any], int]] = []
        self.attempts: list[tuple[int, str | None]] = []  # (retry index, lastError name seen)
        self._lock = threading.Lock()

    def _check(self, retry_index: int) -> None:
        if self.refuse:
            raise PermissionError("refused by Python")
        if retry_index < self.fail_first:
            raise ValueError("first attempts fail")

    @task
    def echo(self, message: str) -> str:
        self._check(current_context().retry_index)
        return message

    @echo.batch(max_messages=50, max_seconds=0.2)
    async def echo_batch(self, messages: dict[str, str]) -> dict[str, str | ValueError]:
        contexts = batch_contexts()
        with self._lock:
            self.batches.append((frozenset(c.meta.get("batchKey") for c in contexts.values()),
                                 len(messages)))
            self.attempts.extend((c.retry_index, None) for c in contexts.values())
        if self.refuse:
            raise PermissionError("refused by Python")  # the whole batch fails
        # a per-task failure: an exception as the task's value
        return {t: ValueError("first attempts fail") if contexts[t].retry_index < self.fail_first
                else m for t, m in messages.items()}


def _worker(broker: BrokerInfo, namespace: str, service: BenchService, *,
            event_handler: bool = False, retry: RetryPolicy | None = None) -> Worker:
    worker = Worker(broker.service_url, admin_url=broker.admin_url, name="py-product")
    worker.add_service(service, name="BenchService", wire="infinitic", tenant=TENANT,
                       namespace=namespace, event_handler=event_handler, retry=retry,
                       concurrency=4)
    return worker


async def _serve(worker: Worker, runner: Any, timeout: float) -> int:
    await worker.start()
    try:
        code: int = await asyncio.to_thread(runner.wait, timeout)
    finally:
        await worker.stop(grace=5.0)
    return code


def _versions(admin: PulsarAdmin, namespace: str, local: str) -> list[int]:
    body = admin.get_json(f"/admin/v2/schemas/{TENANT}/{namespace}/{quote(local)}/schemas")
    return sorted(int(v["version"]) for v in body["getSchemaResponses"])


async def test_the_worker_batches_1000_jvm_workflow_tasks_by_key(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, admin: PulsarAdmin, interop_namespace: str
) -> None:
    """10 KeyedBenchWorkflows x 100 tasks over 10 batch keys: every workflow completes right;
    every Python batch holds one key; Python added no schema version."""
    runner = start_jvm("workflows=10", "per=100", "keys=10", "timeout=300", main="bench.KeyedKt")
    await asyncio.to_thread(runner.wait_for, r"waiting for an external executor", 300)
    service = BenchService()
    code = await _serve(_worker(pulsar_broker, interop_namespace, service), runner, 360)
    assert code == 0, runner.tail()
    assert "every result correct" in runner.output()
    assert sum(n for _, n in service.batches) == 1000
    assert all(len(keys) == 1 for keys, _ in service.batches)
    assert {k for keys, _ in service.batches for k in keys} == {f"k{i}".encode() for i in range(10)}
    assert max(n for _, n in service.batches) > 1  # batches, not singles
    for local in ("task-executor:BenchService", "task-events:BenchService"):
        assert _versions(admin, interop_namespace, local) == [0], local


async def test_a_task_failing_for_good_after_a_retry_reaches_the_jvm_workflow(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, interop_namespace: str
) -> None:
    """Retry policy 1 retry: the retry goes through task-retry and the JVM's retry handler (the
    second attempt comes back with retry index 1), then the failure for good: the JVM workflow
    fails with Infinitic's task failure carrying the Python error's name and message."""
    runner = start_jvm("workflows=1", "per=3", "keys=1", "timeout=120", main="bench.KeyedKt")
    await asyncio.to_thread(runner.wait_for, r"waiting for an external executor", 300)
    service = BenchService(refuse=True)
    policy = RetryPolicy(maximum_retries=1, minimum_seconds=0.5, random_factor=0.0)
    code = await _serve(_worker(pulsar_broker, interop_namespace, service, retry=policy),
                        runner, 240)
    assert code == 1, runner.tail()
    output = runner.output()
    assert "builtins.PermissionError" in output and "refused by Python" in output, runner.tail()
    assert sorted(i for i, _ in service.attempts) == [0, 0, 0, 1, 1, 1]


async def test_no_jvm_service_worker_the_worker_plays_the_event_and_retry_handlers(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, admin: PulsarAdmin, interop_namespace: str
) -> None:
    """The JVM runs KeyedBenchWorkflow only (``keyed-only.yml``). Python executes BenchService,
    relays its retries (task-retry -> task-executor) and its events (-> workflow-engine, keyed
    by workflow id, JavaStringHash partition): every first attempt fails, the retries succeed,
    every workflow completes right."""
    runner = start_jvm("workflows=10", "per=20", "keys=4", "timeout=240", "file=keyed-only.yml",
                       main="bench.KeyedKt")
    await asyncio.to_thread(runner.wait_for, r"waiting for an external executor", 300)
    service = BenchService(fail_first=1)
    policy = RetryPolicy(maximum_retries=2, minimum_seconds=0.5, random_factor=0.0)
    worker = _worker(pulsar_broker, interop_namespace, service, event_handler=True, retry=policy)
    code = await _serve(worker, runner, 300)
    assert code == 0, runner.tail()
    assert "every result correct" in runner.output()
    assert sorted(i for i, _ in service.attempts) == [0] * 200 + [1] * 200
    assert _versions(admin, interop_namespace, "workflow-engine:KeyedBenchWorkflow") == [0]
