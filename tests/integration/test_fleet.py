"""Fleet scale-out against the real broker (issue 15): 4 workers on one key_shared service keep
their batches full *and* share the load; workers leaving and joining lose nothing.

In-process workers (one transport and one consumer each, as separate pods would have): the broker
routes by consumer, so one process shows the routing. Counts, never timings: ``max_seconds`` is
long (5 s), so a batch is cut short only when its key's tasks went to several workers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from infinitic_py import AsyncClient, Call, Worker
from infinitic_py.transport.base import ConsumerSettings, SubscriptionType

from .conftest import BrokerInfo
from .fleet_service import Batch, FleetRecorder, Item
from .harness import wait_for_condition

KEYS = 20
N = 4000  # 200 tasks per key: two full batches of 100 when a key stays on one worker
# Which consumer owns which key is a hash draw of the broker's (consumer names, keys). With 20 keys
# on 4 consumers, 11 of 20 random compositions put more than 1.5x the fair share on one worker
# (measured, issue 15 note): the 20-key tests pin the consumer names (worker-0..3, with keys
# tenant-000..019 a deterministic draw of 4 / 5 / 4 / 7 keys) and assert the routing (each key on
# one worker, full batches, every worker busy); the fair share is asserted over 200 keys.


@dataclass
class FleetRun:
    workers: int
    batches: list[Batch]

    @property
    def mean_batch(self) -> float:
        return sum(len(b.ns) for b in self.batches) / len(self.batches)

    def max_share(self, total: int) -> float:
        """Largest worker's task count over its fair share (total / workers)."""
        counts = _sum_by_worker(self.batches)
        return max(counts.values()) / (total / self.workers)

    def keys_on_several_workers(self) -> int:
        owners: dict[str, set[str]] = {}
        for b in self.batches:
            for key in b.keys:
                owners.setdefault(key, set()).add(b.who)
        return sum(1 for who in owners.values() if len(who) > 1)

    def describe(self, total: int) -> str:
        counts = _sum_by_worker(self.batches)
        shares = " / ".join(str(counts.get(f"w{i}", 0)) for i in range(self.workers))
        return (f"{self.workers} workers: tasks {shares}, mean batch {self.mean_batch:.1f}, "
                f"max share {self.max_share(total):.2f}x fair, "
                f"keys on >1 worker {self.keys_on_several_workers()}")


def _sum_by_worker(batches: list[Batch]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for b in batches:
        counts[b.who] = counts.get(b.who, 0) + len(b.ns)
    return counts


def _key(i: int, keys: int, hot: bool) -> str:
    """``hot``: 8 tasks in 10 carry one key (a tenant with most of the traffic)."""
    if hot and i % 10 < 8:
        return "tenant-hot"
    return f"tenant-{i % keys:03d}"


async def run_fleet(
    broker: BrokerInfo,
    workers: int,
    *,
    subscription: SubscriptionType = SubscriptionType.KEY_SHARED,
    single: bool = False,
    n: int = N,
    keys: int = KEYS,
    max_messages: int = 100,
    hot: bool = False,
    client_options: Mapping[str, Any] | None = None,
    names: str = "worker",
) -> FleetRun:
    service = f"Fleet{uuid.uuid4().hex[:10]}"
    batches: list[Batch] = []
    fleet = [
        Worker(broker.service_url, name=f"w{i}", http_port=None,
               consumer=ConsumerSettings(subscription_type=subscription,
                                         receiver_queue_size=1000,
                                         consumer_name=f"{names}-{i}"),
               ).add_service(FleetRecorder(f"w{i}", batches), name=service,
                             batch={"record": (max_messages, 5.0)})
        for i in range(workers)
    ]
    try:
        for w in fleet:  # every consumer connected before the first task: settled key ranges
            await w.start()
        async with AsyncClient(broker.service_url, results=False, subscription_type=subscription,
                               **(client_options or {})) as client:
            stub = client.service(FleetRecorder, name=service)
            calls = [Call(Item(i), meta={"batchKey": _key(i, keys, hot)}) for i in range(n)]
            for start in range(0, n, 100):
                chunk = calls[start:start + 100]
                if single:
                    await asyncio.gather(*(
                        stub.record.options(meta=c.meta)(*c.args) for c in chunk))
                else:
                    await stub.record.many(chunk)
            done = await wait_for_condition(
                lambda: sum(len(b.ns) for b in batches) >= n, timeout=45)
            assert done, f"{sum(len(b.ns) for b in batches)} of {n} tasks ran"
    finally:
        await asyncio.gather(*(w.stop(grace=10) for w in fleet))
    ran = Counter(i for b in batches for i in b.ns)
    assert set(ran) == set(range(n)), "every task ran"
    return FleetRun(workers, batches)


@pytest.mark.parametrize("dispatch", ["many", "single"])
async def test_key_shared_routes_each_key_on_its_own(
    pulsar_broker: BrokerInfo, dispatch: str
) -> None:
    """Before issue 15: a ``many()`` of mixed keys was one producer batch, routed by one key
    (4 workers: 0 / 4,000 / 0 / 0 tasks); single dispatches in one batching delay, the same
    (15 / 3,738 / 121 / 126, every key on all 4 workers, mean batch 42)."""
    single = dispatch == "single"
    one = await run_fleet(pulsar_broker, 1, single=single)
    four = await run_fleet(pulsar_broker, 4, single=single)
    print(f"\n{dispatch}: {one.describe(N)}\n{dispatch}: {four.describe(N)}")
    assert four.keys_on_several_workers() == 0, four.describe(N)
    assert four.mean_batch >= 0.9 * one.mean_batch, four.describe(N)
    assert len(_sum_by_worker(four.batches)) == 4, four.describe(N)


async def test_key_shared_fleet_shares_the_load(pulsar_broker: BrokerInfo) -> None:
    """200 keys (20 tasks each, batches of 20): no worker above 1.5x its fair share, batches as
    full as on one worker."""
    one = await run_fleet(pulsar_broker, 1, keys=200, max_messages=20)
    four = await run_fleet(pulsar_broker, 4, keys=200, max_messages=20)
    print(f"\n{one.describe(N)}\n{four.describe(N)}")
    assert four.keys_on_several_workers() == 0, four.describe(N)
    assert four.mean_batch >= 0.9 * one.mean_batch, four.describe(N)
    assert four.max_share(N) <= 1.5, four.describe(N)


async def test_key_spread_spreads_a_hot_key(pulsar_broker: BrokerInfo) -> None:
    """One key with 80% of the tasks pins one worker; ``key_spread=4`` gives it 4 sub-keys (on
    up to 4 workers), and every batch still holds one batch key (the worker groups by it)."""
    pinned = await run_fleet(pulsar_broker, 4, hot=True, n=2000)
    spread = await run_fleet(pulsar_broker, 4, hot=True, n=2000,
                             client_options={"key_spread": 4})
    print(f"\nhot key: {pinned.describe(2000)}\nkey_spread=4: {spread.describe(2000)}")

    def hot_owners(run: FleetRun) -> set[str]:
        return {b.who for b in run.batches if "tenant-hot" in b.keys}

    assert len(hot_owners(pinned)) == 1
    assert len(hot_owners(spread)) >= 2
    assert spread.max_share(2000) < pinned.max_share(2000)
    assert all(len(b.keys) == 1 for b in spread.batches)


async def test_key_rotation_spreads_runs_and_keeps_batches_full(
        pulsar_broker: BrokerInfo) -> None:
    """``key_rotation=100`` (= max_messages): each run of 100 tasks of a key reaches one worker
    and fills one batch there, and the runs of all keys spread over the fleet (each worker's
    share is a draw of 40 runs, not of 20 keys). A hot key (80% of the tasks) spreads too."""
    rotated = await run_fleet(pulsar_broker, 4, client_options={"key_rotation": 100})
    print(f"\nkey_rotation=100: {rotated.describe(N)}")
    assert all(len(b.ns) == 100 for b in rotated.batches), rotated.describe(N)
    assert all(len(b.keys) == 1 for b in rotated.batches)
    assert len(_sum_by_worker(rotated.batches)) == 4, rotated.describe(N)
    assert rotated.max_share(N) <= 2.0, rotated.describe(N)

    hot = await run_fleet(pulsar_broker, 4, hot=True, client_options={"key_rotation": 100})
    print(f"hot key, key_rotation=100: {hot.describe(N)}")
    hot_batches = [b for b in hot.batches if "tenant-hot" in b.keys]
    assert all(len(b.ns) == 100 for b in hot_batches), hot.describe(N)  # 3,200: 32 full runs
    assert len({b.who for b in hot_batches}) >= 3, hot.describe(N)
