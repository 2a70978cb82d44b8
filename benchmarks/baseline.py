"""Baseline: how fast raw pulsar-client consumes and acks pre-published messages.

Two loops, both on a Shared subscription with the worker's consumer settings (batch-index acks,
a native receiver queue of 1000: a worker at its default ``receiver_queue_size`` of 2000 asks the
broker for 1000 and holds up to 1000 more in its receive thread's chunks, as the thread loop below
holds up to one ``batch_receive`` of 1000), both timed from the first received message to the
last ack call:

- ``asyncio``: ``pulsar.asyncio`` — ``await consumer.receive()`` then ``await consumer.acknowledge()``;
- ``thread``: a thread on the sync ``batch_receive()`` (``ConsumerBatchReceivePolicy``: up to 1000
  messages or 10 ms) acking each message with the native sync ``acknowledge``.

Both read ``msg.data()`` (a consumer must); neither decodes. The faster is "the limit".
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import pulsar
import pulsar.asyncio as pulsar_asyncio

from benchmarks.common import (
    Env,
    native_logger,
    new_transport,
    outgoing,
    prepublish,
    rate,
    runs_of,
    wait_drained,
)
from infinitic_py.transport.base import ConsumerSettings

SUBSCRIPTION = "bench-baseline"
RECEIVER_QUEUE = 1000


@dataclass(frozen=True)
class BaselineResult:
    variant: str
    n: int
    seconds: float
    drained: bool

    @property
    def tasks_per_s(self) -> float:
        return rate(self.n, self.seconds)


def _consumer_args() -> dict[str, Any]:
    return {
        "consumer_type": pulsar.ConsumerType.Shared,
        "receiver_queue_size": RECEIVER_QUEUE,
        "batch_index_ack_enabled": True,
        "initial_position": pulsar.InitialPosition.Earliest,
    }


async def _asyncio_loop(env: Env, topic: str, n: int) -> float:
    client = pulsar_asyncio.Client(env.url, logger=native_logger())
    try:
        consumer = await client.subscribe(topic, SUBSCRIPTION, **_consumer_args())
        started: float | None = None
        for _ in range(n):
            msg = await consumer.receive()
            if started is None:
                started = time.perf_counter()
            msg.data()
            await consumer.acknowledge(msg)
        assert started is not None
        elapsed = time.perf_counter() - started
        await consumer.close()
        return elapsed
    finally:
        await client.close()


def _thread_loop(env: Env, topic: str, n: int) -> float:
    client = pulsar.Client(env.url, logger=native_logger())
    try:
        consumer = client.subscribe(
            topic, SUBSCRIPTION, **_consumer_args(),
            batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(1000, -1, 10),
        )
        native: Any = consumer._consumer  # the wrapper only adds per-message Python objects
        elapsed: list[float] = []

        def run() -> None:
            got = 0
            started: float | None = None
            while got < n:
                msgs = native.batch_receive()
                if started is None:
                    started = time.perf_counter()
                for msg in msgs:
                    msg.data()
                    native.acknowledge(msg)
                got += len(msgs)
            assert started is not None
            elapsed.append(time.perf_counter() - started)

        thread = threading.Thread(target=run, name="bench-baseline")
        thread.start()
        thread.join()
        consumer.close()
        return elapsed[0]
    finally:
        client.close()


async def _transport_loop(env: Env, topic: str, n: int, ack_every: int = 100) -> float:
    """infinitic-py's own PulsarConsumer as the executor uses it: ``receive_many`` (runs of what
    the client holds), ack in groups of ``ack_every`` (as the executor acks a batch), no decoding:
    the transport's share of the executor's cost."""
    transport = new_transport(env)
    try:
        consumer = await transport.subscribe(topic, SUBSCRIPTION, ConsumerSettings())
        started: list[float] = []
        async for run in runs_of(consumer, n, ack_every, started):
            await consumer.acknowledge(run)
        elapsed = time.perf_counter() - started[0]
        await consumer.close()
        return elapsed
    finally:
        await transport.close()


async def run_baseline(env: Env, variant: str, n: int) -> BaselineResult:
    topic = env.topic(f"baseline-{variant}")
    await prepublish(env, topic, outgoing("BenchBaseline", "noop", n), SUBSCRIPTION)
    if variant == "transport":
        seconds = await _transport_loop(env, topic, n)
    elif variant == "asyncio":
        seconds = await _asyncio_loop(env, topic, n)
    elif variant == "thread":
        seconds = await asyncio.to_thread(_thread_loop, env, topic, n)
    else:
        raise ValueError(variant)
    drained = await wait_drained(env, topic, SUBSCRIPTION, timeout=10.0) == (0, 0)
    return BaselineResult(variant, n, seconds, drained)
