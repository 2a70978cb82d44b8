"""End to end: dispatch → worker process → result back in the dispatching process.

Two phases on the same worker, after a warm-up round (producers, subscriptions, response
consumer):

- latency: an open loop at ``latency_rate`` tasks/s (one dispatch of ``latency_chunk`` tasks every
  ``latency_chunk / latency_rate`` s, below saturation); a task's latency runs from just before its
  chunk is handed to the client (encoding included) to the moment its result is available to the
  caller;
- throughput: a closed loop keeping ``window`` tasks in flight (a new chunk whenever a chunk's worth
  of results came back); N tasks from the first dispatch to the last result. Its latencies are
  mostly queueing (about window / throughput) and only reported in the JSON.

Dispatches never wait for each other (``many()`` calls run as concurrent tasks).

- ``raw``: raw pulsar-client on both sides: a batching producer, a thread on ``batch_receive``
  for the responses, and ``benchmarks.raw_echo`` as the worker (decode, reply, flush, ack).
- ``infinitic``: ``AsyncClient`` ``many()`` → ``infinitic-py worker`` (the CLI at its default INFO
  logging, a batched ``EchoService.echo``: max_messages 100, max_seconds 0.05, concurrency 10) →
  ``Deferred``. Chunks of 100 fill a batch, so the latency phase rarely waits for max_seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulsar

from benchmarks.common import (
    NAMESPACE,
    TENANT,
    Env,
    Order,
    native_logger,
    percentile,
    rate,
)
from benchmarks.services import EchoService
from benchmarks.workerproc import start_cli_worker, start_raw_echo, worker_config
from infinitic_py import AsyncClient
from infinitic_py.topics import service_topic
from infinitic_py.wire import native as wire


@dataclass(frozen=True)
class E2EResult:
    variant: str
    n: int
    seconds: float
    window: int
    latencies_ms: list[float]  # open loop at ``rate`` tasks/s
    rate: float
    saturated_ms: list[float]  # the closed loop's latencies (mostly queueing: window / rate)

    @property
    def tasks_per_s(self) -> float:
        return rate(self.n, self.seconds)

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)


Dispatch = Callable[[int, int, Callable[[list[float]], None]], None]


class _Driver:
    """Runs both phases over a ``dispatch(first, size, done)`` that must not block: it sends
    tasks first..first+size-1 and calls ``done(latencies_ms)`` as results come back."""

    def __init__(self, dispatch: Dispatch) -> None:
        self.dispatch = dispatch
        self.next = 0  # index of the next task (each task is dispatched once)

    async def closed_loop(self, n: int, window: int, chunk: int, timeout: float
                          ) -> tuple[float, list[float]]:
        latencies: list[float] = []
        state = {"in_flight": 0, "completed": 0}
        room = asyncio.Event()
        finished = asyncio.Event()

        def done(batch: list[float]) -> None:
            latencies.extend(batch)
            state["in_flight"] -= len(batch)
            state["completed"] += len(batch)
            if window - state["in_flight"] >= chunk:
                room.set()
            if state["completed"] >= n:
                finished.set()

        started = time.perf_counter()
        sent = 0
        while sent < n:
            if window - state["in_flight"] < chunk:
                room.clear()
                await asyncio.wait_for(room.wait(), timeout)
                continue
            size = min(chunk, n - sent)
            state["in_flight"] += size
            self.dispatch(self.next, size, done)
            self.next += size
            sent += size
            await asyncio.sleep(0)  # let results in between chunks
        await asyncio.wait_for(finished.wait(), timeout)
        return time.perf_counter() - started, latencies

    async def open_loop(self, n: int, chunk: int, period: float, timeout: float) -> list[float]:
        latencies: list[float] = []
        finished = asyncio.Event()

        def done(batch: list[float]) -> None:
            latencies.extend(batch)
            if len(latencies) >= n:
                finished.set()

        loop = asyncio.get_running_loop()
        tick = loop.time()
        for _ in range(0, n, chunk):
            self.dispatch(self.next, chunk, done)
            self.next += chunk
            tick += period
            await asyncio.sleep(max(0.0, tick - loop.time()))
        await asyncio.wait_for(finished.wait(), timeout)
        return latencies


async def _phases(driver: _Driver, n: int, window: int, chunk: int, latency_n: int,
                  latency_chunk: int, latency_rate: float) -> tuple[float, list[float],
                                                                    list[float]]:
    opened = await driver.open_loop(latency_n, latency_chunk, latency_chunk / latency_rate, 60)
    seconds, saturated = await driver.closed_loop(n, window, chunk, 120)
    return seconds, opened, saturated


async def run_infinitic(env: Env, n: int, *, window: int = 2000, chunk: int = 200,
                        latency_n: int = 3000, latency_chunk: int = 100,
                        latency_rate: float = 1000.0, publish_delay_ms: int | None = None
                        ) -> E2EResult:
    service = env.service_name("E2E")
    config = worker_config(
        env.url, env.admin_url, "benchmarks.services:EchoService", service, "echo",
        max_messages=100, max_seconds=0.05,
    )
    options: dict[str, Any] = {}
    if publish_delay_ms is not None:  # both producers: the client's and the worker's
        config["pulsar"]["producer"] = {"batching_max_publish_delay_ms": publish_delay_ms}
        options["batching_max_publish_delay_ms"] = publish_delay_ms
    worker = start_cli_worker(config)
    try:
        await worker.wait_ready()
        async with AsyncClient(env.url, tenant=TENANT, namespace=NAMESPACE,
                               transport_options=options) as client:
            env.created_topics.append(client.response_topic)
            stub = client.service(EchoService, name=service)
            total = n + latency_n + 100
            orders = [Order(i, f"customer-{i % 997}@example.com", 1000 + i) for i in range(total)]
            warm = await stub.echo.many(orders[:100])
            await asyncio.gather(*(d.result(timeout=60) for d in warm))
            loop = asyncio.get_running_loop()
            keep: list[Any] = []  # a Deferred nobody holds is forgotten by the client
            sends: set[asyncio.Task[None]] = set()

            async def send(first: int, size: int, done: Callable[[list[float]], None]) -> None:
                t0 = loop.time()

                def arrived(_: asyncio.Future[Any]) -> None:
                    done([(loop.time() - t0) * 1000])

                deferreds = await stub.echo.many(orders[first : first + size])
                keep.extend(deferreds)
                for d in deferreds:
                    # Deferred has no callback API: the benchmark peeks at its future to stamp
                    # the moment the result is available, without a task per Deferred.
                    future: asyncio.Future[Any] | None = d._future
                    assert future is not None
                    future.add_done_callback(arrived)

            def dispatch(first: int, size: int, done: Callable[[list[float]], None]) -> None:
                task = asyncio.create_task(send(first + 100, size, done))
                sends.add(task)
                task.add_done_callback(sends.discard)

            seconds, opened, saturated = await _phases(
                _Driver(dispatch), n, window, chunk, latency_n, latency_chunk, latency_rate)
    finally:
        await worker.stop()
    return E2EResult("infinitic", n, seconds, window, opened, latency_rate, saturated)


async def run_raw(env: Env, n: int, *, window: int = 2000, chunk: int = 200,
                  latency_n: int = 3000, latency_chunk: int = 100,
                  latency_rate: float = 1000.0) -> E2EResult:
    topic = service_topic(TENANT, NAMESPACE, env.service_name("E2ERaw"))
    response_topic = env.topic("e2e-raw-response")
    subscription = "bench-raw-echo"
    loop = asyncio.get_running_loop()
    client = pulsar.Client(env.url, logger=native_logger())
    # Subscriptions first (nothing is retained without one), then the worker.
    client.subscribe(topic, subscription, consumer_type=pulsar.ConsumerType.Shared).close()
    worker = start_raw_echo(env.url, topic, subscription)
    responses = client.subscribe(
        response_topic, "bench-raw-client", consumer_type=pulsar.ConsumerType.Exclusive,
        receiver_queue_size=1000,
        batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(1000, -1, 1),
    )
    producer = client.create_producer(
        topic, batching_enabled=True, batching_max_messages=1000,
        batching_max_publish_delay_ms=10, block_if_queue_full=True,
    )
    waiting: dict[str, tuple[float, Callable[[list[float]], None] | None]] = {}
    warm_done = asyncio.Event()
    stop = threading.Event()

    def on_results(ids: list[str]) -> None:
        now = loop.time()
        by_callback: dict[Any, list[float]] = {}
        for task_id in ids:
            t0, done = waiting.pop(task_id)
            by_callback.setdefault(done, []).append((now - t0) * 1000)
        for done, latencies in by_callback.items():
            if done is not None:
                done(latencies)
        if not waiting:
            warm_done.set()

    def receive_responses() -> None:
        native: Any = responses._consumer
        while not stop.is_set():
            try:
                msgs = native.batch_receive()
            except Exception:
                return  # closed
            if not msgs:
                continue
            ids = [wire.decode_reply(m.data()).task_id for m in msgs]
            for m in msgs:
                native.acknowledge(m)
            loop.call_soon_threadsafe(on_results, ids)

    thread = threading.Thread(target=receive_responses, name="bench-raw-responses", daemon=True)
    thread.start()

    def dispatch_raw(first: int, size: int, done: Callable[[list[float]], None] | None) -> None:
        t0 = loop.time()
        now = wire.now()
        for i in range(first, first + size):  # encoding is part of a dispatch, as in many()
            task = wire.ExecuteTask(
                task_id=uuid.uuid4().hex, service="raw", method="echo",
                args=wire.encode_value((Order(i, f"customer-{i % 997}@example.com", 1000 + i),)),
                reply_to=response_topic, emitted_at=now, first_emitted_at=now,
            )
            waiting[task.task_id] = (t0, done)
            producer.send_async(wire.encode(task), _ignore, properties=wire.properties_for(task))

    try:
        await worker.wait_ready()
        dispatch_raw(0, 100, None)
        await asyncio.wait_for(warm_done.wait(), 60)
        seconds, opened, saturated = await _phases(
            _Driver(dispatch_raw), n, window, chunk, latency_n, latency_chunk, latency_rate)
    finally:
        stop.set()
        await worker.stop()
        producer.close()
        responses.close()
        thread.join(5)
        client.close()
    return E2EResult("raw", n, seconds, window, opened, latency_rate, saturated)


def _ignore(*_: Any) -> None:
    return None
