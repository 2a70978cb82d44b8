"""Failure semantics (issue 6) on both transports: retries, per-task outcomes, timeouts,
dead letters, undecodable messages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import msgspec
import pytest

from infinitic_py import (
    AsyncClient,
    BatchLimits,
    RetryPolicy,
    TaskFailed,
    Worker,
    get_context,
    task,
)
from infinitic_py.topics import dead_letter_topic, service_topic
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import Consumer, ConsumerSettings, OutgoingMessage, Transport
from infinitic_py.wire import native as wire

from .harness import Harness, receive_letters


class Item(msgspec.Struct, frozen=True):
    n: int


class Flaky:
    """Configurable failures, recording every attempt (task n -> [(retry_index, monotonic)])."""

    def __init__(self) -> None:
        self.attempts: dict[int, list[tuple[int, float]]] = defaultdict(list)
        self.batches: list[list[int]] = []
        self.fail_batch_until_retry = 0  # whole batch raises while retry_index < this
        self.fail_items: set[int] = set()  # these fail alone (exception as a value) on retry 0
        self.missing: set[int] = set()  # these ids are left out of the result
        self.poison: set[int] = set()  # any batch containing these raises
        self.sleep = 0.0

    @task
    def work(self, item: Item) -> int:
        return item.n

    @work.batch(max_messages=50, max_seconds=0.2, isolate_failures=False)
    async def work_batch(self, items: dict[str, Item]) -> dict[str, int | Exception]:
        now = time.monotonic()
        self.batches.append(sorted(it.n for it in items.values()))
        retry = {get_context(t).retry_index for t in items}
        for t, it in items.items():
            self.attempts[it.n].append((get_context(t).retry_index, now))
        if self.sleep:
            await asyncio.sleep(self.sleep)
        if min(retry) < self.fail_batch_until_retry:
            raise ConnectionError(f"provider down (retry {min(retry)})")
        if self.poison & {it.n for it in items.values()}:
            raise ValueError("poisoned batch")
        out: dict[str, int | Exception] = {}
        for t, it in items.items():
            if it.n in self.missing:
                continue
            if it.n in self.fail_items and get_context(t).retry_index == 0:
                out[t] = LookupError(f"item {it.n} not found")
            else:
                out[t] = it.n
        return out


class Isolating(Flaky):
    @task
    def work(self, item: Item) -> int:
        return item.n

    @work.batch(max_messages=50, max_seconds=0.2, isolate_failures=True)
    async def work_batch(self, items: dict[str, Item]) -> dict[str, int | Exception]:
        return await Flaky.work_batch(self, items)


def unique() -> str:
    return f"Svc{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(harness.url, tenant=harness.tenant, namespace=harness.namespace) as c:
        yield c


async def start(
    harness: Harness, service: object, name: str, retry: RetryPolicy | None = None,
    timeout: float | None = None, limits: BatchLimits | None = None,
) -> Worker:
    worker = Worker(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                    name=f"w-{name}", shutdown_grace=10.0)
    worker.add_service(service, name=name, retry=retry, timeout=timeout,
                       batch={"work": limits} if limits else None)
    await worker.start()
    return worker


async def dlq_consumer(harness: Harness, name: str) -> tuple[Transport, Consumer]:
    transport = create_transport(harness.url)
    consumer = await transport.subscribe(
        dead_letter_topic(harness.tenant, harness.namespace, name), "test-dlq", ConsumerSettings()
    )
    return transport, consumer



POLICY = RetryPolicy(maximum_retries=5, minimum_seconds=0.3, maximum_seconds=5.0,
                     backoff_coefficient=2.0, random_factor=0.2)


async def test_batch_failing_twice_then_succeeding(harness: Harness, client: AsyncClient) -> None:
    name = unique()
    svc = Flaky()
    svc.fail_batch_until_retry = 2
    worker = await start(harness, svc, name, retry=POLICY)
    try:
        ds = await client.service(Flaky, name=name).work.many([Item(i) for i in range(20)])
        assert await asyncio.gather(*(d.result(timeout=60) for d in ds)) == list(range(20))
        # A retried task is batched again with new work: tick of Pulsar's delayed delivery (1 s)
        # plus the batch's max_seconds bound how late a retry may run.
        slack = 0.2 + (1.2 if harness.kind == "pulsar" else 0.2)
        for n in range(20):
            attempts = svc.attempts[n]
            assert [r for r, _ in attempts] == [0, 1, 2], attempts
            for k in (0, 1):
                lo, hi = POLICY.delay_bounds(k)
                gap = attempts[k + 1][1] - attempts[k][1]
                assert lo - 0.05 <= gap <= hi + slack, (n, k, gap, lo, hi)
    finally:
        await worker.stop()


async def test_one_failing_task_in_a_batch_is_retried_alone(
    harness: Harness, client: AsyncClient
) -> None:
    name = unique()
    svc = Flaky()
    svc.fail_items = {17}
    worker = await start(harness, svc, name, retry=POLICY, limits=BatchLimits(50, 0.5))
    try:
        ds = await client.service(Flaky, name=name).work.many([Item(i) for i in range(50)])
        assert await asyncio.gather(*(d.result(timeout=60) for d in ds)) == list(range(50))
        assert all(len(svc.attempts[n]) == 1 for n in range(50) if n != 17)
        assert [r for r, _ in svc.attempts[17]] == [0, 1]
        assert [17] in svc.batches, f"the retry ran in its own batch: {svc.batches}"
    finally:
        await worker.stop()


async def test_exhausted_retries_fail_the_task_and_dead_letter_it(
    harness: Harness, client: AsyncClient
) -> None:
    name = unique()
    svc = Flaky()
    svc.fail_batch_until_retry = 99
    transport, dlq = await dlq_consumer(harness, name)
    policy = RetryPolicy(maximum_retries=2, minimum_seconds=0.1, maximum_seconds=0.2,
                         random_factor=0.0)
    worker = await start(harness, svc, name, retry=policy)
    try:
        (d,) = await client.service(Flaky, name=name).work.many([Item(5)])
        with pytest.raises(TaskFailed) as info:
            await d.result(timeout=60)
        assert info.value.error_type == "ConnectionError"
        assert info.value.retry_index == 2
        assert "provider down" in info.value.message
        (letter,) = await receive_letters(dlq, 1)
        assert letter.reason == "retries_exhausted"
        assert letter.task_id == d.task_id and letter.retry_index == 2
        assert letter.traceback and "ConnectionError" in letter.traceback
        original = wire.decode_execute(letter.payload)
        assert original.task_id == d.task_id and original.retry_index == 2
    finally:
        await worker.stop()
        await dlq.close()
        await transport.close()


async def test_missing_id_fails_with_missing_batch_result_and_ignored_exceptions_are_final(
    harness: Harness, client: AsyncClient
) -> None:
    name = unique()
    svc = Flaky()
    svc.missing = {3}
    policy = RetryPolicy(maximum_retries=3, minimum_seconds=0.1,
                         ignored_exceptions=(Exception,))  # nothing is retried
    worker = await start(harness, svc, name, retry=policy)
    try:
        ds = await client.service(Flaky, name=name).work.many([Item(i) for i in range(5)])
        results = await asyncio.gather(*(d.result(timeout=30) for d in ds), return_exceptions=True)
        assert results[:3] == [0, 1, 2] and results[4] == 4
        failed = results[3]
        assert isinstance(failed, TaskFailed)
        assert failed.error_type == "MissingBatchResult" and failed.retry_index == 0
    finally:
        await worker.stop()


async def test_batch_timeout_fails_every_task(harness: Harness, client: AsyncClient) -> None:
    name = unique()
    svc = Flaky()
    svc.sleep = 5.0
    worker = await start(harness, svc, name, timeout=0.3)
    try:
        ds = await client.service(Flaky, name=name).work.many([Item(i) for i in range(3)])
        for d in ds:
            with pytest.raises(TaskFailed) as info:
                await d.result(timeout=30)
            assert info.value.error_type == "TaskTimeout"
    finally:
        await worker.stop()


async def test_isolate_failures_finds_the_poisoned_task(harness: Harness, client: AsyncClient) -> None:
    name = unique()
    svc = Isolating()
    svc.poison = {6}
    worker = await start(harness, svc, name, limits=BatchLimits(10, 0.3))
    try:
        ds = await client.service(Isolating, name=name).work.many([Item(i) for i in range(10)])
        results = await asyncio.gather(*(d.result(timeout=30) for d in ds), return_exceptions=True)
        assert [r for i, r in enumerate(results) if i != 6] == [i for i in range(10) if i != 6]
        assert isinstance(results[6], TaskFailed) and results[6].error_type == "ValueError"
        assert [6] in svc.batches
    finally:
        await worker.stop()


async def test_garbage_bytes_are_dead_lettered_and_the_other_tasks_run(
    harness: Harness, client: AsyncClient
) -> None:
    name = unique()
    svc = Flaky()
    transport, dlq = await dlq_consumer(harness, name)
    worker = await start(harness, svc, name)
    try:
        producer = await transport.create_producer(service_topic(harness.tenant, harness.namespace, name))
        await producer.send(OutgoingMessage(b"\xc1 not msgpack at all", {"taskId": "garbage-1"}))
        ds = await client.service(Flaky, name=name).work.many([Item(i) for i in range(10)])
        assert await asyncio.gather(*(d.result(timeout=30) for d in ds)) == list(range(10))
        (letter,) = await receive_letters(dlq, 1)
        assert letter.reason == "undecodable"
        assert letter.payload == b"\xc1 not msgpack at all"
        assert letter.task_id == "garbage-1" and letter.message
        assert worker.ready()[0]
        await producer.close()
    finally:
        await worker.stop()
        await dlq.close()
        await transport.close()


async def test_wrong_argument_type_is_a_type_error_at_the_call_site(
    harness: Harness, client: AsyncClient
) -> None:
    stub = client.service(Flaky, name=unique())
    with pytest.raises(TypeError, match="Expected `int`, got `str`"):
        await stub.work(Item("seven"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="item 1"):
        await stub.work.many([Item(1), {"n": "x"}])


class Picky(msgspec.Struct, frozen=True):
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise KeyError("negative")  # not a msgspec error


class Mutating:
    @task
    def go(self, item: Picky) -> int:
        return item.n

    @go.batch(max_messages=10, max_seconds=0.2)
    def go_batch(self, items: dict[str, Picky]) -> dict[str, int]:
        out = {}
        while items:  # empties the dict it was given
            t, it = items.popitem()
            out[t] = it.n
        return out


async def test_odd_argument_errors_and_mutated_inputs_do_not_stop_the_worker(
    harness: Harness, client: AsyncClient
) -> None:
    name = unique()
    worker = Worker(harness.url, name=f"w-{name}", shutdown_grace=10.0)
    worker.add_service(Mutating(), name=name)
    await worker.start()
    try:
        stub = client.service(name, results=True)  # by name: no client-side validation
        bad = (await stub.go.many([{"n": -1}]))[0]
        with pytest.raises(TaskFailed) as info:
            await bad.result(timeout=30)
        assert info.value.error_type == "DecodeError"
        good = await stub.go.many([{"n": i} for i in range(5)])
        assert sorted([await d.result(timeout=30) for d in good]) == list(range(5))
        assert worker.ready()[0]
    finally:
        await worker.stop()


class Unwritable:
    """Returns, for some tasks, what MessagePack cannot carry, or fails them with an error whose
    text it cannot carry; counts every execution."""

    def __init__(self) -> None:
        self.runs: defaultdict[int, int] = defaultdict(int)

    @task
    def work(self, item: Item) -> object:
        return item.n

    @work.batch(max_messages=50, max_seconds=0.2)
    async def work_batch(self, items: dict[str, Item]) -> dict[str, object]:
        out: dict[str, object] = {}
        for t, it in items.items():
            self.runs[it.n] += 1
            if it.n == 7:
                out[t] = 2**70  # over 64 bits
            elif it.n == 8:
                out[t] = "report-\udcff.csv"  # a lone surrogate (surrogateescape'd bytes)
            elif it.n == 9:
                out[t] = OSError("cannot open /data/\udcff.csv")
            else:
                out[t] = it.n
        return out


async def test_an_output_or_error_msgpack_cannot_carry_fails_that_task_alone(
    harness: Harness, client: AsyncClient
) -> None:
    """Before: the unit crashed building its outcomes, the whole batch was nacked and ran again
    and again (then Pulsar dead-lettered all 20, the callers never answered)."""
    name = unique()
    svc = Unwritable()
    transport, dlq = await dlq_consumer(harness, name)
    worker = Worker(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                    name=f"w-{name}", shutdown_grace=10.0)
    worker.add_service(svc, name=name, batch={"work": BatchLimits(20, 0.5)})
    await worker.start()
    try:
        ds = await client.service(Unwritable, name=name).work.many([Item(i) for i in range(20)])
        results = await asyncio.gather(*(d.result(timeout=30) for d in ds),
                                       return_exceptions=True)
        assert [r for i, r in enumerate(results) if i not in (7, 8, 9)] == [
            i for i in range(20) if i not in (7, 8, 9)]
        assert [type(results[i]).__name__ for i in (7, 8, 9)] == ["TaskFailed"] * 3
        assert [r.error_type for r in results[7:10] if isinstance(r, TaskFailed)] == [
            "OverflowError", "UnicodeEncodeError", "OSError"]
        letters = await receive_letters(dlq, 3, timeout=30, then_quiet=2.0)
        assert sorted(letter.task_id or "" for letter in letters) == sorted(
            d.task_id for d in ds[7:10])
        assert all(count == 1 for count in svc.runs.values()), dict(svc.runs)
    finally:
        await worker.stop()
        await dlq.close()
        await transport.close()


async def test_a_message_nested_too_deep_to_decode_is_dead_lettered_not_looped(
    harness: Harness, client: AsyncClient
) -> None:
    """MessagePack nested deeper than msgspec's recursion limit: RecursionError, not a
    msgspec.DecodeError. Before: it escaped routing, the worker gave back the whole received run
    (the good tasks in it too) and logged receive.crashed, again at every redelivery; it was
    never dead-lettered."""
    name = unique()
    svc = Flaky()
    transport, dlq = await dlq_consumer(harness, name)
    worker = await start(harness, svc, name)
    hostile = (b"\x84\xa7task_id\xa4deep\xa7service" + msgspec.msgpack.encode(name)
               + b"\xa6method\xa4work\xa4meta" + b"\x81\xa1a" * 50_000 + b"\x01")
    try:
        producer = await transport.create_producer(
            service_topic(harness.tenant, harness.namespace, name))
        await producer.send(OutgoingMessage(hostile, {"taskId": "deep"}))
        ds = await client.service(Flaky, name=name).work.many([Item(i) for i in range(50)])
        assert await asyncio.gather(*(d.result(timeout=30) for d in ds)) == list(range(50))
        (letter,) = await receive_letters(dlq, 1, timeout=30, then_quiet=2.0)
        assert (letter.reason, letter.task_id) == ("undecodable", "deep")
        assert "recursion" in letter.message
        assert all(len(svc.attempts[n]) == 1 for n in range(50))
        assert await harness.wait_drained(
            service_topic(harness.tenant, harness.namespace, name)) == (0, 0)
        await producer.close()
    finally:
        await worker.stop()
        await dlq.close()
        await transport.close()


class Padded(msgspec.Struct, frozen=True):
    n: int
    pad: str = ""


class Echoing:
    """Fails a task whose input is padded with an error that repeats the whole input (parsers
    do); counts runs."""

    def __init__(self) -> None:
        self.runs: defaultdict[int, int] = defaultdict(int)

    @task
    def work(self, item: Padded) -> int:
        return item.n

    @work.batch(max_messages=10, max_seconds=0.5)
    async def work_batch(self, items: dict[str, Padded]) -> dict[str, int | Exception]:
        for it in items.values():
            self.runs[it.n] += 1
        return {t: ValueError(f"cannot parse {it.pad!r}") if it.pad else it.n
                for t, it in items.items()}


async def test_an_error_echoing_a_large_input_costs_its_batch_nothing(
    harness: Harness, client: AsyncClient
) -> None:
    """On the real broker, before: the dead letter (the 2 MB task, its 2 MB message, its
    traceback repeating it) was over the broker's 5 MiB limit, its publish failed, the whole
    batch was nacked and ran again and again (then Pulsar dead-lettered all 10)."""
    name = unique()
    svc = Echoing()
    transport, dlq = await dlq_consumer(harness, name)
    worker = Worker(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                    name=f"w-{name}", shutdown_grace=10.0)
    worker.add_service(svc, name=name)
    await worker.start()
    try:
        stub = client.service(Echoing, name=name)
        ds = await stub.work.many([Padded(i) for i in range(9)] + [Padded(9, "p" * 2_000_000)])
        results = await asyncio.gather(*(d.result(timeout=60) for d in ds),
                                       return_exceptions=True)
        assert results[:9] == list(range(9))
        failed = results[9]
        assert isinstance(failed, TaskFailed) and failed.error_type == "ValueError"
        assert "characters cut" in failed.message
        (letter,) = await receive_letters(dlq, 1, timeout=30, then_quiet=2.0)
        assert letter.task_id == ds[9].task_id and letter.reason == "retries_exhausted"
        assert wire.decode_execute(letter.payload).task_id == ds[9].task_id
        assert dict(svc.runs) == dict.fromkeys(range(10), 1)
    finally:
        await worker.stop()
        await dlq.close()
        await transport.close()
