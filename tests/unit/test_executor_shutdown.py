"""ServiceExecutor.stop() when the grace period ends while a unit publishes its outcomes: the unit
is not cancelled mid-publish (its tasks would run again elsewhere); it gets a little longer to ack.
A FixedTransport whose producers wait for the test."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
import structlog

from infinitic_py import task
from infinitic_py.service import define_service
from infinitic_py.transport.base import (
    Consumer,
    ConsumerClosed,
    ConsumerSettings,
    OutgoingMessage,
    Producer,
    ReceivedMessage,
)
from infinitic_py.transport.fixed import FixedTransport
from infinitic_py.wire import native as wire
from infinitic_py.worker.executor import ServiceExecutor
from infinitic_py.worker.settings import ExecutorSettings


class Job(msgspec.Struct, frozen=True):
    n: int


class Echo:
    @task
    def echo(self, job: Job) -> int:
        return job.n

    @echo.batch(max_messages=2, max_seconds=0.05)
    async def echo_batch(self, jobs: dict[str, Job]) -> dict[str, int]:
        return {t: j.n for t, j in jobs.items()}


class OneRunConsumer(Consumer):
    def __init__(self, msgs: list[ReceivedMessage]) -> None:
        self.msgs = msgs
        self.acked: list[ReceivedMessage] = []
        self.nacked: list[ReceivedMessage] = []
        self.closed = asyncio.Event()

    async def receive(self) -> ReceivedMessage:
        return (await self.receive_many(1))[0]

    async def receive_many(self, max_messages: int) -> list[ReceivedMessage]:
        if self.msgs:
            out, self.msgs = self.msgs[:max_messages], self.msgs[max_messages:]
            return out
        await self.closed.wait()
        raise ConsumerClosed("closed")

    async def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        self.acked.extend(messages)

    def negative_acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        self.nacked.extend(messages)

    async def close(self) -> None:
        self.closed.set()


class GatedProducer(Producer):
    def __init__(self, topic: str, gate: asyncio.Event, started: asyncio.Event) -> None:
        self._topic = topic
        self.gate = gate
        self.started = started
        self.sent: list[OutgoingMessage] = []

    @property
    def topic(self) -> str:
        return self._topic

    async def send(self, message: OutgoingMessage) -> None:
        await self.send_many([message])

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None:
        self.started.set()
        await self.gate.wait()
        self.sent.extend(messages)

    async def close(self) -> None:
        pass


class GatedTransport(FixedTransport):
    """Every producer's publish waits for ``gate``; ``publishing`` is set once one waits."""

    def __init__(self, consumer: OneRunConsumer) -> None:
        super().__init__(consumer, self._producer)
        self.gate = asyncio.Event()
        self.publishing = asyncio.Event()
        self.producers: list[GatedProducer] = []

    def _producer(self, topic: str) -> Producer:
        producer = GatedProducer(topic, self.gate, self.publishing)
        self.producers.append(producer)
        return producer


def _message(n: int, redelivery_count: int = 0) -> ReceivedMessage:
    execute = wire.ExecuteTask(
        task_id=f"t{n}", service="Echo", method="echo", args=wire.encode_value((Job(n),)),
        reply_to="persistent://public/default/response:replies",
    )
    return ReceivedMessage(wire.encode(execute), {}, redelivery_count, "topic", None)


async def test_grace_expiry_does_not_cancel_a_unit_publishing_its_outcomes() -> None:
    consumer = OneRunConsumer([_message(1), _message(2)])
    transport = GatedTransport(consumer)
    executor = ServiceExecutor(define_service(Echo(), name="Echo"), transport, ExecutorSettings())
    await executor.start()
    await asyncio.wait_for(transport.publishing.wait(), 5)  # the batch ran; its replies wait
    with structlog.testing.capture_logs() as logs:
        stopping = asyncio.ensure_future(executor.stop(grace=0.05))
        deadline = asyncio.get_running_loop().time() + 5
        while not any(e["event"] == "executor.grace_exceeded" for e in logs):
            assert asyncio.get_running_loop().time() < deadline, logs
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)  # let a cancelled unit run its except clause, if it was cancelled
        assert not consumer.nacked
        assert [e["settling"] for e in logs if e["event"] == "executor.grace_exceeded"] == [1]
    transport.gate.set()
    await asyncio.wait_for(stopping, 10)
    assert sorted(m.data for m in consumer.acked) == sorted([_message(1).data, _message(2).data])
    assert not consumer.nacked
    assert len(transport.producers[0].sent) == 2


class LateRunConsumer(OneRunConsumer):
    """Hands out its one run, whole, only once ``release`` is set: the worker is stopping by
    then."""

    def __init__(self, msgs: list[ReceivedMessage]) -> None:
        super().__init__(msgs)
        self.release = asyncio.Event()

    async def receive_many(self, max_messages: int) -> list[ReceivedMessage]:
        await self.release.wait()
        return await super().receive_many(len(self.msgs) or 1)


async def test_a_run_received_while_stopping_is_given_back_without_dead_lettering() -> None:
    """A nack of a message at its last delivery has the broker dead-letter it: one received
    while the worker stops never ran, so it is left to the consumer's close, which hands it to
    the next worker; the others are nacked (they go there at once)."""
    fresh, last = _message(1), _message(2, redelivery_count=3)
    consumer = LateRunConsumer([fresh, last])
    executor = ServiceExecutor(define_service(Echo(), name="Echo"), FixedTransport(consumer),
                               ExecutorSettings(consumer=ConsumerSettings(max_redeliveries=3)))
    await executor.start()
    stopping = asyncio.ensure_future(executor.stop(grace=1))
    deadline = asyncio.get_running_loop().time() + 5
    while not executor._stopping:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    consumer.release.set()
    await asyncio.wait_for(stopping, 10)
    assert consumer.nacked == [fresh]
    assert not consumer.acked
