"""The executor's own cost, without a broker: a ``ServiceExecutor`` fed pre-encoded ExecuteTask
messages by an in-process consumer that hands out runs of 250 (as the Pulsar transport does) and
whose ack is free. CPU µs per task, from the first receive to the last ack: what the executor adds
on top of the transport (a diagnostic row; ``make bench`` prints it next to the broker rows)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.common import outgoing
from benchmarks.services import NoopService, SyncNoopService
from infinitic_py.batching import BatchLimits
from infinitic_py.observability import Metrics
from infinitic_py.service import define_service
from infinitic_py.transport.base import Consumer, ConsumerClosed, ReceivedMessage
from infinitic_py.transport.fixed import FixedTransport
from infinitic_py.worker.executor import ServiceExecutor
from infinitic_py.worker.settings import ExecutorSettings

RUN = 250  # messages per receive_many, like the Pulsar transport's receive chunk


class _FeedingConsumer(Consumer):
    def __init__(self, payloads: list[bytes]) -> None:
        self._payloads = payloads
        self._next = 0
        self.acked = 0
        self.all_acked = asyncio.Event()
        self._closed = asyncio.Event()

    async def receive(self) -> ReceivedMessage:
        return (await self.receive_many(1))[0]

    async def receive_many(self, max_messages: int) -> list[ReceivedMessage]:
        if self._next >= len(self._payloads):
            await self._closed.wait()
            raise ConsumerClosed("closed")
        await asyncio.sleep(0)  # a real receive yields to the loop
        start, self._next = self._next, min(len(self._payloads), self._next + min(RUN, max_messages))
        return [ReceivedMessage(data, {}, 0, "local", None)
                for data in self._payloads[start:self._next]]

    async def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        self.acked += len(messages)
        if self.acked >= len(self._payloads):
            self.all_acked.set()

    def negative_acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        raise AssertionError("the no-op service never fails")

    async def close(self) -> None:
        self._closed.set()


@dataclass(frozen=True)
class LocalResult:
    max_messages: int
    n: int
    cpu_us_per_task: float


async def run_executor_local(max_messages: int, n: int, *, sync: bool = False) -> LocalResult:
    payloads = [m.data for m in outgoing("Local", "noop", n)]
    consumer = _FeedingConsumer(payloads)
    definition = define_service(
        SyncNoopService() if sync else NoopService(), name="Local", batch_limits={"noop": BatchLimits(max_messages, 0.05)})
    executor = ServiceExecutor(definition, FixedTransport(consumer), ExecutorSettings(),
                               metrics=Metrics())
    started = time.process_time()
    await executor.start()
    await asyncio.wait_for(consumer.all_acked.wait(), timeout=max(60.0, n / 1000))
    cpu = time.process_time() - started
    await executor.stop(grace=5.0)
    return LocalResult(max_messages, n, cpu / n * 1e6)
