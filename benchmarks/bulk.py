"""Dispatch throughput of ``many()`` of 1,000 tasks, plain vs ``atomic=True`` (issue 18).

Measured from the client only: the time ``await stub.method.many(calls)`` takes until the broker
confirmed every message (plain: 1,000 messages in producer batches; atomic: one message carrying
them all). No worker runs: the topic's subscription keeps the tasks, deleted with the bench
topics at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from benchmarks.common import Env
from infinitic_py import AsyncClient, Call


@dataclass
class BulkResult:
    plain_tasks_per_s: float
    atomic_tasks_per_s: float
    plain_runs: list[float]
    atomic_runs: list[float]


async def run_bulk(env: Env, size: int = 1000, rounds: int = 10) -> BulkResult:
    service = env.service_name("bulk")
    plain: list[float] = []
    atomic: list[float] = []
    async with AsyncClient(env.url, results=False) as client:
        stub = client.service(service)
        warm = [Call(i) for i in range(size)]
        await stub.run.many(warm)  # producer created, broker warm
        await stub.run.many(warm, atomic=True)
        for _ in range(rounds):  # alternate: both see the same broker drift
            for atomic_call, runs in ((False, plain), (True, atomic)):
                calls = [Call(i) for i in range(size)]
                began = time.perf_counter()
                await stub.run.many(calls, atomic=atomic_call)
                runs.append(size / (time.perf_counter() - began))
    plain.sort()
    atomic.sort()
    return BulkResult(plain[len(plain) // 2], atomic[len(atomic) // 2], plain, atomic)
