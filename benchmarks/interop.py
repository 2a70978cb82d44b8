"""``make bench`` row **interop** (opt-in: ``--only interop``, needs Java + the Infinitic jar):
the Python executor serving Infinitic's wire against the JVM Infinitic executor, on the same
broker, same batch settings (``@Batch`` 100 / 1.0 s, concurrency 4), in the same run.

- JVM: the example runner's ``mode=isolated`` (``shared/infinitic/example``, built as the interop
  tests build it): W workflows x n tasks pile up on ``task-executor:BenchService``, then a
  service-only Infinitic worker drains them while nobody consumes ``task-events``; its line
  ``rate=... tasks/s`` is tasks / (first batch start -> last batch end). Default JVM flags (C2).
- Python: N Infinitic ``ExecuteTask`` (the envelope a JVM client sends, with
  ``methodParameterTypes``) pre-published on ``task-executor:BenchService`` of an Infinitic-style
  namespace (schema validation enforced, the JVM's schema); then ``Worker.add_service(...,
  wire="infinitic")`` drains them (started + completed events published on ``task-events``,
  which has a subscription nobody consumes, as in ``isolated``); rate = N / (first batch start ->
  last batch end), the same measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import Env
from infinitic_py import task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import OutgoingMessage, SubscriptionType
from infinitic_py.worker import Worker

SERVICE = "BenchService"


@dataclass
class InteropResult:
    python_tps: float
    python_n: int
    jvm_tps: float | None
    jvm_k: int
    jvm_line: str
    skipped: str | None = None


class _Stats:
    def __init__(self) -> None:
        self.first_start: float | None = None
        self.last_end = 0.0
        self.tasks = 0
        self.batches = 0
        self.done = asyncio.Event()
        self.target = 0


class BenchService:
    """The JVM example's BenchService in Python (batch 100 / 1.0 s, as its svc.yml)."""

    def __init__(self, stats: _Stats) -> None:
        self.stats = stats

    @task
    def echo(self, s: str) -> str:
        return s

    @echo.batch(max_messages=100, max_seconds=1.0)
    async def echo_batch(self, items: dict[str, str]) -> dict[str, str]:
        stats = self.stats
        now = time.perf_counter()
        if stats.first_start is None:
            stats.first_start = now
        out = dict(items)
        stats.tasks += len(items)
        stats.batches += 1
        stats.last_end = time.perf_counter()
        if stats.tasks >= stats.target:
            stats.done.set()
        return out


def missing() -> str | None:
    from tests.interop import jvm

    return jvm.missing()


async def run_python(env: Env, n: int, profiler: Any = None) -> tuple[float, int]:
    from infinitic_py.wire.infinitic import envelopes, outcomes, values
    from infinitic_py.wire.infinitic.dialect import EXECUTOR_SUBSCRIPTION, InfiniticDialect
    from tests.interop.namespaces import create_infinitic_namespace, drop_namespace

    namespace = f"bench-py-{uuid.uuid4().hex[:6]}"
    admin = PulsarAdmin(env.admin_url)
    create_infinitic_namespace(admin, namespace)
    try:
        dialect = InfiniticDialect("public", namespace)
        for topic, partitions in dialect.topics(SERVICE).items():
            admin.ensure_topic(topic, partitions)
        transport = create_transport(env.url)
        executor_topic = dialect.topic("task-executor", SERVICE)
        await transport.ensure_subscription(executor_topic, EXECUTOR_SUBSCRIPTION,
                                            SubscriptionType.SHARED)
        await transport.ensure_subscription(dialect.topic("task-events", SERVICE),
                                            "task-events-subscription", SubscriptionType.SHARED)
        producer = await transport.create_producer(
            executor_topic, schema=dialect.producer_schema(executor_topic))
        messages = [OutgoingMessage(envelopes.encode_execute_task(outcomes.client_task(
            SERVICE, "echo", [values.encode_value(f"m{i}")], "bench-client",
            parameter_types=["java.lang.String"]))) for i in range(n)]
        for start in range(0, n, 5000):
            await producer.send_many(messages[start:start + 5000])
        await transport.close()
        stats = _Stats()
        stats.target = n
        worker = Worker(env.url, admin_url=env.admin_url, name="bench-py")
        worker.add_service(BenchService(stats), name=SERVICE, wire="infinitic",
                           namespace=namespace, concurrency=4)
        await worker.start()
        if profiler is not None:
            profiler.enable()
        try:
            await asyncio.wait_for(stats.done.wait(), 600)
        finally:
            if profiler is not None:
                profiler.disable()
            await worker.stop(grace=10.0)
        assert stats.first_start is not None
        return n / (stats.last_end - stats.first_start), stats.batches
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(drop_namespace, admin, namespace)


def run_jvm(env: Env, workflows: int, per: int) -> tuple[float | None, str]:
    from tests.interop import jvm
    from tests.interop.namespaces import drop_namespace

    namespace = f"bench-jvm-{uuid.uuid4().hex[:6]}"
    project = jvm.build()
    with tempfile.TemporaryDirectory() as tmp:
        config = jvm.write_config(Path(tmp) / "config", namespace, env.url, env.admin_url)
        runner = jvm.JvmRunner(
            project, config, Path(tmp) / "jvm.log", "mode=isolated", f"namespace={namespace}",
            f"workflows={workflows}", f"per={per}", "timeout=600",
            env={"PULSAR_URL": env.url, "PULSAR_ADMIN_URL": env.admin_url},
            jvm_options=("-Xmx1g",))
        try:
            code = runner.wait(900)
            output = runner.output()
        finally:
            runner.stop()
            with contextlib.suppress(Exception):
                drop_namespace(PulsarAdmin(env.admin_url), namespace)
    found = re.search(r"executor drained: (service: .*?rate=(\d+) tasks/s.*)", output)
    if code != 0 or not found:
        return None, f"JVM run failed (exit {code}): {output.strip().splitlines()[-1:]}"
    return float(found.group(2)), found.group(1)


async def run_interop(env: Env, python_n: int, workflows: int, per: int) -> InteropResult:
    reason = missing()
    if reason:
        return InteropResult(0.0, python_n, None, workflows * per, "", skipped=reason)
    jvm_tps, line = await asyncio.to_thread(run_jvm, env, workflows, per)
    python_tps, _ = await run_python(env, python_n)
    return InteropResult(python_tps, python_n, jvm_tps, workflows * per, line)
