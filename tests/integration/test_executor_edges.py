"""Executor edge cases on both transports: copies of settled attempts (redelivery, a task id
dispatched again), sync handlers that outlive their timeout, batch inputs that cannot be built."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from infinitic_py import AsyncClient, Call, RetryPolicy, TaskFailed, Worker, task

from .harness import Harness, wait_for_condition

NO_RETRY = RetryPolicy(maximum_retries=0)
_live_workers: list[Worker] = []  # the running ``counting`` worker, for white-box checks


def unique() -> str:
    return f"Svc{uuid.uuid4().hex[:10]}"


class Job(msgspec.Struct, frozen=True):
    n: int
    size: int = 0  # length of the returned string


class Counting:
    """Counts how many times each job ran."""

    def __init__(self) -> None:
        self.runs: Counter[int] = Counter()

    @task
    def run(self, job: Job) -> str:
        return "x" * job.size

    @run.batch(max_messages=10, max_seconds=0.05)
    async def run_batch(self, jobs: dict[str, Job]) -> dict[str, str]:
        for job in jobs.values():
            self.runs[job.n] += 1
        return {t: f"{job.n}:" + "x" * job.size for t, job in jobs.items()}


@contextlib.asynccontextmanager
async def serving(
    harness: Harness, service: object, name: str, max_hung_handlers: int | None = None,
    **options: Any,
) -> AsyncIterator[Worker]:
    """A worker running ``service`` as ``name`` (no retries unless ``options`` say otherwise)."""
    worker = Worker(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                    name=f"w-{name}", shutdown_grace=10.0, max_hung_handlers=max_hung_handlers)
    worker.add_service(service, name=name, **{"retry": NO_RETRY, **options})
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


@pytest.fixture
async def counting(harness: Harness) -> AsyncIterator[tuple[Harness, Counting, str]]:
    name = unique()
    service = Counting()
    async with serving(harness, service, name) as worker:
        _live_workers.append(worker)
        try:
            yield harness, service, name
        finally:
            _live_workers.remove(worker)


async def _from_two_callers(harness: Harness, name: str, job: Job) -> tuple[str, str]:
    """The same job with the same task id from two clients (two reply topics), one after the
    other; both results."""
    task_id = f"order-{uuid.uuid4().hex}"
    results = []
    for _ in range(2):
        async with AsyncClient(harness.url) as client:
            (d,) = await client.service(Counting, name=name).run.many([Call(job, task_id=task_id)])
            results.append(await d.result(timeout=30))
    return results[0], results[1]


@pytest.mark.parametrize(("size", "runs"), [(0, 1), (100_000, 2)])
async def test_a_task_id_dispatched_again_gets_the_kept_reply_or_runs_again(
    counting: tuple[Harness, Counting, str], size: int, runs: int
) -> None:
    """Kept reply (up to 64 KiB): sent again without running. Too large to keep: it runs
    again, better twice than a caller never answered."""
    harness, service, name = counting
    first, second = await _from_two_callers(harness, name, Job(7, size=size))
    assert first == second == "7:" + "x" * size
    assert service.runs[7] == runs


async def test_a_fire_and_forget_copy_of_a_settled_task_is_acked_without_running(
    counting: tuple[Harness, Counting, str],
) -> None:
    harness, service, name = counting
    task_id = f"order-{uuid.uuid4().hex}"
    async with AsyncClient(harness.url) as client:
        stub = client.service(Counting, name=name, results=False)
        await stub.run.many([Call(Job(9), task_id=task_id)])
        assert await wait_for_condition(lambda: service.runs[9] == 1, timeout=30)
        await stub.run.many([Call(Job(9), task_id=task_id), Call(Job(10))])
        assert await wait_for_condition(lambda: service.runs[10] == 1, timeout=30)
    topic = harness.topic(f"task-executor:{name}")
    assert await harness.wait_drained(topic) == (0, 0)
    assert service.runs[9] == 1


class Blocking:
    """A sync batch method that blocks (holding its pool thread) on jobs listed in ``block``."""

    def __init__(self) -> None:
        self.block: set[int] = set()
        self.gate = threading.Event()

    @task
    def run(self, job: Job) -> int:
        return job.n

    @run.batch(max_messages=1, max_seconds=0.05)
    def run_batch(self, jobs: dict[str, Job]) -> dict[str, int]:
        if any(job.n in self.block for job in jobs.values()):
            self.gate.wait(30)
        return {t: job.n for t, job in jobs.items()}


async def test_a_sync_handler_timeout_starts_when_a_thread_starts_it(harness: Harness) -> None:
    name = unique()
    service = Blocking()
    service.block = {0, 1}
    # concurrency 1 and one hung handler replaced at most: two timed-out handlers hold both
    # threads (up to two, they are replaced: tests/integration/test_hung_handlers.py).
    async with serving(harness, service, name, concurrency=1, timeout=0.3,
                       max_hung_handlers=1), \
            AsyncClient(harness.url) as client:
        try:
            stub = client.service(Blocking, name=name)
            for n in (0, 1):
                (d,) = await stub.run.many([Job(n)])
                with pytest.raises(TaskFailed) as info:
                    await d.result(timeout=30)
                assert info.value.error_type == "TaskTimeout"
            (queued,) = await stub.run.many([Job(2)])
            waiting = asyncio.ensure_future(queued.result(timeout=60))
            # Queued behind two stuck threads for three times its timeout: not a timeout.
            done, _ = await asyncio.wait({waiting}, timeout=1.0)
            assert not done
            service.gate.set()
            assert await waiting == 2
        finally:
            service.gate.set()  # let the stuck threads go before the worker stops


@dataclasses.dataclass(frozen=True)
class Pair:
    a: int
    b: int

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("a must be >= 0")


class Pairs:
    @task
    def add(self, a: int, b: int) -> int:
        return a + b

    @add.batch(max_messages=10, max_seconds=0.1)
    def add_batch(self, pairs: dict[str, Pair]) -> dict[str, int]:
        return {t: p.a + p.b for t, p in pairs.items()}


async def test_a_batch_input_that_cannot_be_built_fails_that_task_alone(harness: Harness) -> None:
    name = unique()
    async with serving(harness, Pairs(), name), AsyncClient(harness.url) as client:
        ds = await client.service(Pairs, name=name).add.many([(1, 2), (-1, 5), (3, 4)])
        assert await ds[0].result(timeout=30) == 3
        assert await ds[2].result(timeout=30) == 7
        with pytest.raises(TaskFailed) as info:
            await ds[1].result(timeout=30)
        assert info.value.error_type == "DecodeError"
        assert "a must be >= 0" in info.value.message


async def test_a_client_refuses_to_dispatch_a_task_id_it_already_awaits(harness: Harness) -> None:
    async with AsyncClient(harness.url) as client:
        stub = client.service(Counting, name=unique())  # no worker: the result stays pending
        (first,) = await stub.run.many([Call(Job(1), task_id="the-id")])
        with pytest.raises(ValueError, match="already dispatched"):
            await stub.run.options(task_id="the-id")(Job(1))
        assert not first.done()


async def test_a_newer_deferred_for_a_task_id_survives_the_older_ones_finalizer(
    counting: tuple[Harness, Counting, str],
) -> None:
    harness, service, name = counting
    task_id = f"order-{uuid.uuid4().hex}"
    async with AsyncClient(harness.url) as client:
        stub = client.service(Counting, name=name)
        (first,) = await stub.run.many([Call(Job(11), task_id=task_id)])
        assert await first.result(timeout=30) == "11:"
        (second,) = await stub.run.many([Call(Job(11), task_id=task_id)])  # answered: allowed
        del first
        gc.collect()  # the first Deferred's finalizer must not drop the second one's future
        assert await second.result(timeout=30) == "11:"
    assert service.runs[11] == 1


class Options:
    """Parameters named like the dispatch options."""

    @task
    def describe(self, delay: int, tags: list[str], meta: str) -> str:
        return f"{delay}:{','.join(tags)}:{meta}"


async def test_task_parameters_may_be_named_like_the_options(harness: Harness) -> None:
    name = unique()
    async with serving(harness, Options(), name), AsyncClient(harness.url) as client:
        stub = client.service(Options, name=name)
        one = await stub.describe(delay=3, tags=["a", "b"], meta="m")
        assert await one.result(timeout=30) == "3:a,b:m"
        (two,) = await stub.describe.many([
            Call.build(kwargs={"delay": 4, "tags": ["c"], "meta": "n"}, tags=["t1"]),
        ])
        assert await two.result(timeout=30) == "4:c:n"


async def test_reply_producers_are_bounded(counting: tuple[Harness, Counting, str]) -> None:
    harness, _, name = counting
    for i in range(70):  # 70 short-lived clients: 70 reply topics
        async with AsyncClient(harness.url) as client:
            (d,) = await client.service(Counting, name=name).run.many([Job(1000 + i)])
            assert await d.result(timeout=30) == f"{1000 + i}:"
    workers = [w for w in _live_workers if any(e.service == name for e in w.executors)]
    (executor,) = [e for w in workers for e in w.executors if e.service == name]
    assert len(executor._producers) <= 64


class Gated:
    """An async batch method that holds its batch until ``gate`` opens; counts runs."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.runs: Counter[int] = Counter()

    @task
    def run(self, job: Job) -> str:
        return str(job.n)

    @run.batch(max_messages=10, max_seconds=0.05)
    async def run_batch(self, jobs: dict[str, Job]) -> dict[str, str]:
        for job in jobs.values():
            self.runs[job.n] += 1
        self.started.set()
        await self.gate.wait()
        return {t: f"{job.n}:done" for t, job in jobs.items()}


async def test_a_copy_of_a_running_attempt_waits_for_it_and_is_never_dead_lettered(
    harness: Harness,
) -> None:
    """A copy of an attempt that is still running (the same task id dispatched again; or every
    unacked message, redelivered when the broker restarts or moves the topic) used to be nacked
    each time it came back: with ``max_redeliveries`` set, once the attempt ran longer than
    that many nack delays, the broker dead-lettered the copy (a dead letter for a task that
    completed) and its caller was never answered. Now it waits for the running attempt and is
    answered from its outcome."""
    from infinitic_py.transport.base import ConsumerSettings

    from .test_failures import dlq_consumer

    name = unique()
    service = Gated()
    transport, dlq = await dlq_consumer(harness, name)
    worker = Worker(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                    name=f"w-{name}", shutdown_grace=10.0,
                    consumer=ConsumerSettings(nack_redelivery_delay=0.1, max_redeliveries=2))
    worker.add_service(service, name=name, retry=NO_RETRY)
    await worker.start()
    try:
        task_id = f"order-{uuid.uuid4().hex}"
        async with AsyncClient(harness.url) as first, AsyncClient(harness.url) as second:
            (d1,) = await first.service(Gated, name=name).run.many([Call(Job(1), task_id=task_id)])
            await asyncio.wait_for(service.started.wait(), 30)
            (d2,) = await second.service(Gated, name=name).run.many(
                [Call(Job(1), task_id=task_id)])
            # Far longer than max_redeliveries x the nack delay: the old code had nacked the
            # copy 3 times and the broker had dead-lettered it.
            with contextlib.suppress(TimeoutError):
                msg = await asyncio.wait_for(dlq.receive(), 5.0)
                pytest.fail(f"a copy of a running attempt was dead-lettered: {msg.properties}")
            service.gate.set()
            assert await d1.result(timeout=30) == "1:done"
            assert await d2.result(timeout=30) == "1:done"
        assert service.runs[1] == 1
        assert await harness.wait_drained(harness.topic(f"task-executor:{name}")) == (0, 0)
    finally:
        service.gate.set()
        await worker.stop()
        await dlq.close()
        await transport.close()
