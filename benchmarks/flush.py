"""Flush accuracy: how late a *time* flush fires compared with its deadline, first arrival +
``max_seconds`` (DESIGN §3.2: never later than that plus one scheduler tick).

A ``ServiceExecutor`` receives a trickle of ``tick`` tasks, each in a group of its own (a unique
batch key per task, or one key with tasks ``1.5 x max_seconds`` apart), so every batch is flushed
by its timer. The benchmark wraps that executor's ``_launch`` (benchmark only, on the
instance) to read the batch's ``opened_at`` (the executor's arrival stamp of its first task, loop
time) and the flush moment; the batch method stamps when it started. Two lateness figures:

- flush: ``_launch`` time - (``opened_at`` + ``max_seconds``);
- handler start: batch method start - the same deadline (adds the task spawn and the slot).

Baseline, measured at the same time on the same loop: a bare ``loop.call_later(max_seconds)``
armed when each tick is published (how late asyncio itself runs a timer under those conditions).
``load``: a second executor on the same loop and transport drains that many pre-published no-op
tasks meanwhile (a worker with a busy service and a quiet one).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from benchmarks.common import (
    NAMESPACE,
    TENANT,
    Env,
    execute_task,
    new_transport,
    outgoing,
    percentile,
    prepublish,
)
from benchmarks.services import FlushService, NoopService
from infinitic_py.service import define_service
from infinitic_py.topics import WORKER_SUBSCRIPTION, service_topic
from infinitic_py.transport.base import OutgoingMessage, SubscriptionType
from infinitic_py.wire import native as wire
from infinitic_py.worker.accumulator import Batch, BatchLimits, FlushReason
from infinitic_py.worker.executor import ServiceExecutor
from infinitic_py.worker.routing import GroupKey, Pending
from infinitic_py.worker.settings import ExecutorSettings


@dataclass
class FlushResult:
    label: str
    max_seconds: float
    count: int
    flush_ms: list[float] = field(default_factory=list)
    start_ms: list[float] = field(default_factory=list)
    timer_ms: list[float] = field(default_factory=list)
    not_time: int = 0  # batches flushed for another reason (should be 0)

    def p(self, values: list[float], q: float) -> float:
        return percentile(values, q) if values else float("nan")


async def run_flush(
    env: Env,
    max_seconds: float,
    count: int,
    *,
    unique_keys: bool = True,
    interval: float | None = None,
    load: int = 0,
    label: str = "",
) -> FlushResult:
    loop = asyncio.get_running_loop()
    interval = interval if interval is not None else (0.015 if unique_keys else 1.5 * max_seconds)
    result = FlushResult(label, max_seconds, count)
    service = env.service_name("Flush")
    topic = service_topic(TENANT, NAMESPACE, service)
    transport = new_transport(env)
    executors: list[ServiceExecutor] = []
    try:
        await transport.ensure_subscription(topic, WORKER_SUBSCRIPTION, SubscriptionType.SHARED)
        if load:
            busy = env.service_name("FlushLoad")
            await prepublish(env, service_topic(TENANT, NAMESPACE, busy),
                             outgoing(busy, "noop", load))
            executors.append(ServiceExecutor(
                define_service(NoopService(), name=busy,
                               batch_limits={"noop": BatchLimits(100, 0.05)}),
                transport, ExecutorSettings(tenant=TENANT, namespace=NAMESPACE)))
        instance = FlushService(count)
        quiet = ServiceExecutor(
            define_service(instance, name=service,
                           batch_limits={"tick": BatchLimits(100, max_seconds)}),
            transport, ExecutorSettings(tenant=TENANT, namespace=NAMESPACE))
        deadlines: dict[str, float] = {}
        launch = quiet._launch

        def measured_launch(batch: Batch[GroupKey, Pending]) -> None:
            now = loop.time()
            deadline = batch.opened_at + batch.limits.max_seconds
            if batch.reason is FlushReason.TIME:
                result.flush_ms.append((now - deadline) * 1000)
            else:
                result.not_time += 1
            for p in batch.items:
                deadlines[p.task.task_id] = deadline
            launch(batch)

        quiet._launch = measured_launch  # type: ignore[method-assign]
        executors.append(quiet)
        for executor in executors:
            await executor.start()
        producer = await transport.create_producer(topic)

        def timer_fired(armed_for: float) -> None:
            result.timer_ms.append((loop.time() - armed_for) * 1000)

        sends = []
        for i in range(count):
            task = execute_task(service, "tick", i)
            if unique_keys:
                task.meta[wire.META_BATCH_KEY] = f"key-{i}"
            sends.append(asyncio.ensure_future(producer.send(
                OutgoingMessage(wire.encode(task), wire.properties_for(task)))))
            loop.call_later(max_seconds, timer_fired, loop.time() + max_seconds)
            await asyncio.sleep(interval)
        await asyncio.gather(*sends)
        await asyncio.wait_for(instance.all_started.wait(), max_seconds + 30)
        result.start_ms = [
            (instance.started[t] - deadlines[t]) * 1000 for t in instance.started if t in deadlines
        ]
    finally:
        for executor in executors:
            await executor.stop(grace=5.0)
        await transport.close()
    return result
