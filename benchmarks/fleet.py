"""Fleet: N worker *processes* (``infinitic-py worker``) on one service, K batch keys, a steady
offered rate from one client (issue 15).

Each row starts its workers, waits until all are consuming, then offers ``n`` tasks at ``rate``
tasks/s (a ``many()`` of 100 every 100/rate s, or 100 single dispatches in flight at that pace),
keys round-robin (or 8 in 10 on one hot key), ``results=False``. The service records every batch
(worker, size, keys). Batch limits as in the issue: ``max_messages`` 100, ``max_seconds`` 2.

Figures per row: mean batch as a ratio to the 1-worker row (the fill a fleet keeps), the busiest
worker's tasks over its fair share (n / N), keys seen on more than one worker, and tasks/s (n over
first dispatch -> last batch recorded). Which worker owns which key is the broker's hash draw
over consumer names (random per run here, as pod names are): with 20 keys on 4 workers the
busiest one often holds 7-11 keys, so the share moves between runs; ``key_spread`` evens it
at a cost in fill, ``key_rotation=100`` (runs of ``max_messages`` tasks per routing key: the
share is then a draw of 200 runs, not 20 keys) without one.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import Env, Order
from benchmarks.workerproc import WorkerProcess, start_cli_worker
from infinitic_py import AsyncClient, Call
from infinitic_py.transport.base import SubscriptionType

MAX_MESSAGES = 100
MAX_SECONDS = 2.0


@dataclass(frozen=True)
class FleetCase:
    label: str
    workers: int
    subscription: str = "key_shared"
    single: bool = False
    keys: int = 20
    hot: bool = False
    key_spread: int = 1
    key_rotation: int = 0
    batching_type: str = "key_based"


@dataclass
class FleetResult:
    case: FleetCase
    n: int
    seconds: float
    per_worker: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    keys_on_several: int = 0
    hot_workers: int = 0
    complete: bool = False

    @property
    def tasks_per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_batch(self) -> float:
        return sum(self.per_worker.values()) / self.batches if self.batches else 0.0

    @property
    def max_share(self) -> float:
        if not self.per_worker:
            return 0.0
        return max(self.per_worker.values()) / (self.n / self.case.workers)

    def shares(self) -> str:
        counts = [self.per_worker.get(f"w{i}", 0) for i in range(self.case.workers)]
        return " / ".join(f"{c:,}" for c in counts)


def _read(path: Path) -> list[tuple[str, int, list[str]]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[1].isdigit():
            out.append((parts[0], int(parts[1]), parts[2].split(",")))
    return out


def _key(i: int, case: FleetCase) -> str:
    if case.hot and i % 10 < 8:
        return "tenant-hot"
    return f"tenant-{i % case.keys:02d}"


async def run_fleet(env: Env, case: FleetCase, n: int, rate: float) -> FleetResult:
    service = env.service_name("Fleet")
    workers: list[WorkerProcess] = []
    with tempfile.TemporaryDirectory(prefix="infinitic-fleet-") as tmp:
        records = Path(tmp) / "records.txt"  # every worker process appends its batches here
        try:
            for i in range(case.workers):
                workers.append(start_cli_worker(
                    _config(env, service, case, f"w{i}"),
                    env={"FLEET_WORKER": f"w{i}", "RECORD_FILE": str(records)}))
            await asyncio.gather(*(w.wait_ready(60) for w in workers))
            return await _offer(env, service, case, n, rate, records)
        finally:
            await asyncio.gather(*(w.stop() for w in workers))


def _config(env: Env, service: str, case: FleetCase, who: str) -> dict[str, Any]:
    return {
        "pulsar": {"url": env.url, "admin_url": None,
                   "consumer": {"subscription_type": case.subscription,
                                "receiver_queue_size": 1000}},
        "worker": {"name": who, "shutdown_grace_seconds": 5.0, "http_port": 0,
                   "log_format": "json", "log_level": "info"},  # ready marker: worker.started
        "services": [{"class": "benchmarks.services:FleetService", "name": service,
                      "concurrency": 4,
                      "batch": {"fleet": {"max_messages": MAX_MESSAGES,
                                          "max_seconds": MAX_SECONDS}}}],
    }


async def _offer(env: Env, service: str, case: FleetCase, n: int, rate: float,
                 records: Path) -> FleetResult:
    subscription = SubscriptionType(case.subscription)
    client = AsyncClient(env.url, results=False, subscription_type=subscription,
                         key_spread=case.key_spread, key_rotation=case.key_rotation,
                         transport_options={"batching_type": case.batching_type})
    loop = asyncio.get_running_loop()
    async with client:
        stub = client.service(service)
        started = loop.time()
        step = 100 / rate
        for k, start in enumerate(range(0, n, 100)):
            calls = [Call(Order(i, f"c{i}", i), meta={"batchKey": _key(i, case)})
                     for i in range(start, min(n, start + 100))]
            if case.single:
                await asyncio.gather(*(stub.fleet.options(meta=c.meta)(*c.args) for c in calls))
            else:
                await stub.fleet.many(calls)
            delay = started + (k + 1) * step - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        deadline = time.monotonic() + 120
        rows = _read(records)
        while sum(size for _, size, _ in rows) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            rows = _read(records)
        seconds = loop.time() - started
    per_worker: Counter[str] = Counter()
    owners: dict[str, set[str]] = {}
    for who, size, keys in rows:
        per_worker[who] += size
        for key in keys:
            owners.setdefault(key, set()).add(who)
    return FleetResult(
        case, n, seconds, dict(per_worker), len(rows),
        keys_on_several=sum(1 for w in owners.values() if len(w) > 1),
        hot_workers=len(owners.get("tenant-hot", ())),
        complete=sum(per_worker.values()) >= n,
    )


CASES = (
    FleetCase("1 worker, key_shared, many() of 100", 1),
    FleetCase("2 workers, key_shared, many() of 100", 2),
    FleetCase("4 workers, key_shared, many() of 100", 4),
    FleetCase("4 workers, key_shared, single dispatches", 4, single=True),
    FleetCase("4 workers, shared, many() of 100", 4, subscription="shared"),
    FleetCase("4 workers, key_shared, many(), mixed-key producer batches (before)", 4,
              batching_type="default"),
    FleetCase("4 workers, key_shared, many(), key_spread=2", 4, key_spread=2),
    FleetCase("4 workers, key_shared, hot key (8 in 10 tasks)", 4, hot=True),
    FleetCase("4 workers, key_shared, hot key, key_spread=4", 4, hot=True, key_spread=4),
    FleetCase("4 workers, key_shared, hot key, key_spread=16", 4, hot=True, key_spread=16),
    FleetCase("4 workers, key_shared, many() of 100, key_rotation=100", 4, key_rotation=100),
    FleetCase("4 workers, key_shared, single dispatches, key_rotation=100", 4, single=True,
              key_rotation=100),
    FleetCase("4 workers, key_shared, hot key, key_rotation=100", 4, hot=True,
              key_rotation=100),
)
