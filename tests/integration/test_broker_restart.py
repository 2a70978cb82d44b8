"""A broker restart while tasks flow (issue 6's faults, on the real broker): the worker and the
client ride it out without help, every dispatched task completes, nothing is dead-lettered,
nothing stays unacked.

The restart runs on a private broker (own run directory, free ports, ``pulsar.sh restart``: its
data kept, as a real broker restart) that the test starts and stops itself: the shared broker is
never touched."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections import Counter

import msgspec

from infinitic_py import AsyncClient, BatchLimits, Call, Worker, task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.errors import DispatchFailed
from infinitic_py.topics import (
    DLQ_SUBSCRIPTION,
    WORKER_SUBSCRIPTION,
    dead_letter_topic,
    service_topic,
)
from infinitic_py.transport.base import ConsumerSettings

from .conftest import BrokerInfo
from .harness import poll
from .test_dead_letter_retention import PULSAR_SH, private_broker  # noqa: F401 (a fixture)


class Item(msgspec.Struct, frozen=True):
    n: int


class Steady:
    """Batches that take a little while, so some run while the broker goes away."""

    def __init__(self) -> None:
        self.runs: Counter[int] = Counter()

    @task
    def go(self, item: Item) -> int:
        return item.n

    @go.batch(max_messages=50, max_seconds=0.2)
    async def go_batch(self, items: dict[str, Item]) -> dict[str, int]:
        await asyncio.sleep(0.3)
        for it in items.values():
            self.runs[it.n] += 1
        return {t: it.n for t, it in items.items()}


async def test_a_broker_restart_while_tasks_flow_loses_nothing(
    private_broker: tuple[BrokerInfo, dict[str, str]],  # noqa: F811
) -> None:
    broker, env = private_broker
    admin = PulsarAdmin(broker.admin_url, timeout=10)
    name = f"Restart{uuid.uuid4().hex[:8]}"
    svc = Steady()
    # As the CLI worker runs (config defaults): Pulsar dead-letters after 10 redeliveries.
    worker = Worker(broker.service_url, name="restart-worker", shutdown_grace=10.0,
                    consumer=ConsumerSettings(max_redeliveries=10))
    worker.add_service(svc, name=name, concurrency=4,
                       batch={"go": BatchLimits(max_messages=50, max_seconds=0.2)})
    await worker.start()
    restart: asyncio.Future[subprocess.CompletedProcess[str]] | None = None
    try:
        async with AsyncClient(broker.service_url, admin_url=broker.admin_url) as client:
            stub = client.service(Steady, name=name)
            deferreds = []
            for chunk in range(12):
                if chunk == 4:
                    restart = asyncio.ensure_future(asyncio.to_thread(
                        subprocess.run, [str(PULSAR_SH), "restart"], env=env,
                        capture_output=True, text=True, timeout=400, check=False))
                calls = {f"{name}-{n}": Call(Item(n), task_id=f"{name}-{n}")
                         for n in range(chunk * 100, chunk * 100 + 100)}
                try:
                    deferreds += await stub.go.many(list(calls.values()))
                except DispatchFailed as exc:  # the broker was away: what it confirmed exists
                    deferreds += exc.deferreds
                    if restart is not None:
                        await restart
                    # The rest again, same task ids: safe (a copy is answered, not run twice).
                    deferreds += await stub.go.many([calls[t] for t in exc.unsent])
                await asyncio.sleep(0.3)  # the dispatch rate, not a wait for an event
            assert restart is not None
            done = await restart
            assert done.returncode == 0, done.stderr
            results = await asyncio.gather(*(d.result(timeout=180) for d in deferreds))
        assert sorted(results) == list(range(1200))
        assert set(svc.runs) == set(range(1200))
        topic = service_topic("public", "default", name)
        drained = await poll(lambda: asyncio.to_thread(admin.subscription_counts, topic,
                                                       WORKER_SUBSCRIPTION),
                             lambda c: c == (0, 0), timeout=60)
        assert drained == (0, 0), "nothing stays unacked"
        dlq = dead_letter_topic("public", "default", name)
        assert (await asyncio.to_thread(admin.subscription_counts, dlq, DLQ_SUBSCRIPTION))[0] == 0
        ready, why = worker.ready()
        assert ready, why
        reruns = sum(c - 1 for c in svc.runs.values())
        print(f"1200 tasks across a broker restart: {reruns} re-runs "
              f"(at least once: batches in flight when it went away)")
    finally:
        if restart is not None and not restart.done():
            await restart
        await worker.stop()


class Gated:
    """Batches that hold until the test opens the gate: they run across the restart."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.runs: Counter[int] = Counter()

    @task
    def go(self, item: Item) -> int:
        return item.n

    @go.batch(max_messages=50, max_seconds=0.2)
    async def go_batch(self, items: dict[str, Item]) -> dict[str, int]:
        for it in items.values():
            self.runs[it.n] += 1
        self.started.set()
        await self.gate.wait()
        return {t: it.n for t, it in items.items()}


async def test_batches_running_across_a_broker_restart_are_not_dead_lettered(
    private_broker: tuple[BrokerInfo, dict[str, str]],  # noqa: F811
) -> None:
    """When the worker reconnects, the broker redelivers every message it had not acked, those
    of the batches still running included. Before, each such copy was nacked every time it came
    back: past max_redeliveries the broker dead-lettered it while its batch still ran (seen with
    the CLI worker's defaults and 40 s batches: 200 tasks completed, 200 dead letters)."""
    broker, env = private_broker
    admin = PulsarAdmin(broker.admin_url, timeout=10)
    name = f"Restart{uuid.uuid4().hex[:8]}"
    svc = Gated()
    worker = Worker(broker.service_url, name="restart-worker", shutdown_grace=10.0,
                    consumer=ConsumerSettings(nack_redelivery_delay=0.2, max_redeliveries=3))
    worker.add_service(svc, name=name, concurrency=4)
    await worker.start()
    dlq = dead_letter_topic("public", "default", name)
    try:
        async with AsyncClient(broker.service_url, admin_url=broker.admin_url) as client:
            ds = await client.service(Gated, name=name).go.many([Item(i) for i in range(100)])
            await asyncio.wait_for(svc.started.wait(), 30)
            done = await asyncio.to_thread(subprocess.run, [str(PULSAR_SH), "restart"], env=env,
                                           capture_output=True, text=True, timeout=400,
                                           check=False)
            assert done.returncode == 0, done.stderr
            # The copies are back once the worker is connected again; give the old behaviour
            # (3 nacks of 0.2 s) ample time to dead-letter them.
            await poll(lambda: asyncio.to_thread(worker.ready), lambda r: r[0], timeout=60)
            letters = await poll(lambda: asyncio.to_thread(admin.subscription_counts, dlq,
                                                           DLQ_SUBSCRIPTION),
                                 lambda c: c[0] > 0, timeout=5)
            assert letters[0] == 0, f"{letters[0]} copies of running tasks dead-lettered"
            svc.gate.set()
            assert sorted(await asyncio.gather(*(d.result(timeout=120) for d in ds))) == list(
                range(100))
        assert svc.runs == Counter(range(100))
        assert (await asyncio.to_thread(admin.subscription_counts, dlq, DLQ_SUBSCRIPTION))[0] == 0
    finally:
        svc.gate.set()
        await worker.stop()
