"""The floor: the least any executor on infinitic-py's transport must do, without the executor.

``PulsarConsumer.receive_many`` (as the executor receives), then per 100 messages: decode each
ExecuteTask and its arguments (msgspec, as the executor's router does), build the batch dict
``{task_id: input}``, call a no-op batch method (awaited, or a plain ``def`` run in a thread pool
for the sync row), ack the 100; each batch in an asyncio task of its own, 10 at most at once. No routing, duplicate memory, retry planning, outcomes, unit
tasks, concurrency slots, metrics or logs. Its ratio to the limit bounds the executor rows from
above: what is left between the two is what the executor's own features may cost.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from benchmarks.common import Env, new_transport, outgoing, prepublish, rate, runs_of
from infinitic_py.topics import WORKER_SUBSCRIPTION
from infinitic_py.transport.base import Consumer, ConsumerSettings, ReceivedMessage
from infinitic_py.wire.native import ExecuteTask

BATCH = 100


async def _noop(batch: dict[str, Any]) -> None:
    return None


def _sync_noop(batch: dict[str, Any]) -> None:
    return None


async def run_floor(env: Env, n: int, *, sync: bool = False, concurrency: int = 10) -> float:
    """Drains ``n`` pre-published tasks; returns tasks/s (first receive to the last ack). Each
    batch of 100 runs as its own asyncio task, at most ``concurrency`` at once (as the
    executor's units): the loop keeps receiving while a sync batch runs in the pool."""
    topic = env.topic(f"floor-{'sync' if sync else 'async'}")
    await prepublish(env, topic, outgoing("BenchFloor", "noop", n))
    decode_task = msgspec.msgpack.Decoder(ExecuteTask).decode
    decode_args = msgspec.msgpack.Decoder().decode
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="floor")
    slots = asyncio.Semaphore(concurrency)
    units: set[asyncio.Task[None]] = set()
    transport = new_transport(env)

    async def unit(consumer: Consumer, run: list[ReceivedMessage]) -> None:
        try:
            tasks = [decode_task(m.data) for m in run]
            batch = {t.task_id: decode_args(t.args) for t in tasks}
            if sync:
                await loop.run_in_executor(pool, _sync_noop, batch)
            else:
                await _noop(batch)
            await consumer.acknowledge(run)
        finally:
            slots.release()

    try:
        consumer = await transport.subscribe(topic, WORKER_SUBSCRIPTION, ConsumerSettings())
        started: list[float] = []
        async for run in runs_of(consumer, n, BATCH, started):
            await slots.acquire()
            task = asyncio.create_task(unit(consumer, run))
            units.add(task)
            task.add_done_callback(units.discard)
        while units:
            await asyncio.gather(*units)
        elapsed = time.perf_counter() - started[0]
        await consumer.close()
        return rate(n, elapsed)
    finally:
        pool.shutdown(wait=False)
        await transport.close()
