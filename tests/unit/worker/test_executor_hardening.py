"""Correctness risks of the executor found in review: each test fails on the code before its fix.
Broker-free: a FixedTransport (or a small transport of several consumers) and fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from infinitic_py import task
from infinitic_py.service import define_service
from infinitic_py.transport.base import (
    Consumer,
    ConsumerClosed,
    ConsumerSettings,
    OutgoingMessage,
    Producer,
    ReceivedMessage,
    TransportError,
)
from infinitic_py.transport.fixed import FixedTransport
from infinitic_py.worker import outcomes
from infinitic_py.worker.executor import ServiceExecutor
from infinitic_py.worker.settings import ExecutorSettings

from ..test_executor_shutdown import OneRunConsumer
from .parts import Job, definition, message


class SinkProducer(Producer):
    def __init__(self, topic: str) -> None:
        self._topic = topic
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> None:
        self.sent.append(message)

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None:
        self.sent.extend(messages)

    async def close(self) -> None:
        pass


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def settle_down() -> None:
    for _ in range(50):  # let every ready task run (no wall-clock wait)
        await asyncio.sleep(0)


def executor_on(consumer: Consumer, **settings: Any) -> ServiceExecutor:
    return ServiceExecutor(definition(), FixedTransport(consumer, SinkProducer),
                           ExecutorSettings(**settings))


# ---------------------------------------------------------------- 1: the buffer cap, 3 loops


class Blocking:
    def __init__(self) -> None:
        self.gate = asyncio.Event()

    @task
    async def one(self, job: Job) -> int:
        await self.gate.wait()
        return job.n


class GatedConsumer(Consumer):
    """Holds ``count`` messages; every receive waits for ``gate`` (all loops wait at once)."""

    def __init__(self, name: str, count: int, gate: asyncio.Event) -> None:
        self.msgs = [message(f"{name}{i}", "one") for i in range(count)]
        self.gate = gate
        self.waiting = asyncio.Event()
        self.delivered = 0
        self.closed = asyncio.Event()

    async def receive(self) -> ReceivedMessage:
        return (await self.receive_many(1))[0]

    async def receive_many(self, max_messages: int) -> list[ReceivedMessage]:
        self.waiting.set()
        await self.gate.wait()
        if not self.msgs:
            await self.closed.wait()
            raise ConsumerClosed("closed")
        out, self.msgs = self.msgs[:max_messages], self.msgs[max_messages:]
        self.delivered += len(out)
        return out

    async def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        pass

    def negative_acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        pass

    async def close(self) -> None:
        self.closed.set()


class ManyTransport(FixedTransport):
    def __init__(self, consumers: list[GatedConsumer]) -> None:
        super().__init__(consumers[0], SinkProducer)
        self.consumers = list(consumers)

    async def subscribe(self, topic: str, subscription: str,
                        settings: ConsumerSettings) -> Consumer:
        return self.consumers.pop(0)


async def test_receive_loops_of_the_band_topics_share_the_cap_without_crossing_it() -> None:
    gate = asyncio.Event()
    consumers = [GatedConsumer(name, 10, gate) for name in "abc"]
    service = Blocking()
    executor = ServiceExecutor(define_service(service, name="Jobs"), ManyTransport(consumers),
                               ExecutorSettings(max_buffered_messages=5, concurrency=1))
    assert len(executor.topics) == 3
    await executor.start()
    await asyncio.wait_for(asyncio.gather(*(c.waiting.wait() for c in consumers)), 5)
    gate.set()  # the three loops' receives return at once
    await until(lambda: executor.held >= 5)
    await settle_down()
    assert sum(c.delivered for c in consumers) == 5
    assert executor.held == 5
    service.gate.set()
    await executor.stop(grace=5)


# ---------------------------------------------------------------- 2: ack before recording


async def test_a_failing_record_does_not_skip_the_ack_of_durable_outcomes() -> None:
    consumer = OneRunConsumer([message("a", "one")])
    executor = executor_on(consumer)

    def broken(*args: Any) -> None:
        raise RuntimeError("a user exception whose __str__ raises")

    executor._instruments.record = broken  # type: ignore[method-assign, assignment]
    await executor.start()
    await until(lambda: bool(consumer.acked))
    await until(lambda: executor.held == 0)
    assert not consumer.nacked
    await executor.stop(grace=1)


# ---------------------------------------------------------------- 3: rejections, copies, spawn


async def test_a_failing_rejection_is_nacked_and_releases_its_room(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(outcomes, "plan_rejection", broken)
    consumer = OneRunConsumer([message("a", "unknown_method")])
    executor = executor_on(consumer)
    await executor.start()
    await until(lambda: bool(consumer.nacked))
    await until(lambda: executor.held == 0)
    assert not consumer.acked
    await executor.stop(grace=1)


class SecondAckFails(OneRunConsumer):
    def __init__(self, msgs: list[ReceivedMessage]) -> None:
        super().__init__(msgs)
        self.ack_calls = 0

    async def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        self.ack_calls += 1
        if self.ack_calls == 2:
            raise RuntimeError("bug in a consumer")
        await super().acknowledge(messages)


async def test_a_copy_whose_settle_fails_still_releases_its_room() -> None:
    # The same attempt twice in one run: the copy waits (parked) while the first one runs, then
    # is acked from its outcome; that ack fails: the copy is nacked, its room released.
    first, copy = message("a", "one"), message("a", "one")
    consumer = SecondAckFails([first, copy])
    executor = executor_on(consumer)
    await executor.start()
    await until(lambda: consumer.nacked == [copy])
    await until(lambda: executor.held == 0)
    assert consumer.acked == [first]
    await executor.stop(grace=1)


async def test_a_copy_of_a_running_attempt_is_answered_when_it_settles_never_nacked() -> None:
    first, copy = message("a", "one"), message("a", "one")
    consumer = OneRunConsumer([first, copy])
    executor = executor_on(consumer)
    await executor.start()
    await until(lambda: len(consumer.acked) == 2)
    await until(lambda: executor.held == 0)
    assert consumer.acked == [first, copy] and not consumer.nacked
    await executor.stop(grace=1)


async def test_a_unit_that_raises_is_logged() -> None:
    executor = executor_on(OneRunConsumer([]))
    await executor.start()

    async def boom() -> None:
        raise RuntimeError("boom")

    with capture_logs() as logs:
        executor._spawn(boom())
        await until(lambda: not executor._units)
        await settle_down()
    assert any(e["event"] == "unit.failed" for e in logs)
    await executor.stop(grace=1)


# ---------------------------------------------------------------- 4: the receive loop's guard


class RaisesOnce(OneRunConsumer):
    calls = 0

    async def receive_many(self, max_messages: int) -> list[ReceivedMessage]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("bug in a consumer")
        return await super().receive_many(max_messages)


async def test_an_unexpected_receive_error_does_not_end_the_loop() -> None:
    consumer = RaisesOnce([message("a", "one")])
    executor = executor_on(consumer)
    await executor.start()
    await until(lambda: bool(consumer.acked))
    assert executor.consuming
    await executor.stop(grace=1)


# ---------------------------------------------------------------- 5: launch, timer


async def test_a_failed_launch_gives_back_every_task_of_the_batch_once() -> None:
    consumer = OneRunConsumer([message(f"t{i}", "double") for i in range(3)])  # a full batch
    executor = executor_on(consumer)

    def broken(*args: Any) -> None:
        raise RuntimeError("bug")

    executor._start_unit = broken  # type: ignore[method-assign, assignment]
    await executor.start()
    await until(lambda: len(consumer.nacked) >= 3)
    await until(lambda: executor.held == 0)
    await settle_down()
    assert sorted(m.data for m in consumer.nacked) == sorted(
        message(f"t{i}", "double").data for i in range(3))
    await executor.stop(grace=1)


async def test_a_failing_timer_flush_rearms_the_timer() -> None:
    consumer = OneRunConsumer([message("t1", "double")])  # a batch of one: flushed by its timer
    executor = executor_on(consumer)
    launched: list[Any] = []
    executor._start_unit = lambda method, items, *rest: launched.append(items)  # type: ignore
    original = executor._accumulator.flush_due

    def broken(now: float) -> Any:
        executor._accumulator.flush_due = original  # type: ignore[method-assign]
        raise RuntimeError("bug")

    executor._accumulator.flush_due = broken  # type: ignore[method-assign]
    await executor.start()
    await until(lambda: bool(launched))
    await executor.stop(grace=1)


# ---------------------------------------------------------------- 6: nothing launched while stopping


async def test_a_rerun_during_the_drain_is_given_back_not_launched() -> None:
    consumer = OneRunConsumer([])
    executor = executor_on(consumer)
    launched: list[Any] = []
    executor._start_unit = lambda method, items, *rest: launched.append(items)  # type: ignore
    await executor.start()
    (pending,) = executor._router.route_many([message("r", "one")])[0]
    executor._ledger.hold(1, len(pending.msg.data))
    executor._stopping = True  # as stop() sets it first
    executor._on_rerun(pending)
    await until(lambda: bool(consumer.nacked))
    assert not launched
    assert executor.held == 0
    executor._stopping = False
    await executor.stop(grace=1)


# ---------------------------------------------------------------- 7: settled units settle once


async def test_a_transport_error_after_the_outcomes_are_durable_does_not_nack() -> None:
    consumer = OneRunConsumer([message("a", "one")])
    executor = executor_on(consumer)
    settle = executor._consumers.settle
    acks: list[int] = []

    async def failing(msgs: Sequence[ReceivedMessage], *, ack: bool) -> None:
        if ack:
            acks.append(len(msgs))
            raise TransportError("ack failed")
        await settle(msgs, ack=ack)

    executor._consumers.settle = failing  # type: ignore[method-assign]
    await executor.start()
    await until(lambda: bool(acks) and not executor._units)
    await settle_down()
    assert not consumer.nacked  # the outcomes are out: a nack would run the task again
    assert executor.held == 0
    await executor.stop(grace=1)
