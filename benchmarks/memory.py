"""Memory: RSS of a worker *process* (``infinitic-py worker -c cfg``) draining pre-published
tasks through a slow batch method (``SlowService``: 50 ms per batch of 100, concurrency 10, so at
most 20,000 tasks/s while the consumer could pull several times that).

The backlog is far larger than ``worker.max_buffered_messages`` (10,000), so the worker sits at the
cap the whole run. The service writes the process's VmRSS and VmHWM (peak RSS) on stdout each
time the tasks through its batch method pass a milestone (10,000, 100,000, 200,000). Between 10,000
and 100,000 the executor's duplicate-detection memory of recently acked tasks also fills up (it
keeps the last 100,000 task ids); from 100,000 to 200,000 only the buffer cap is in play. The
parent also samples VmRSS every 100 ms as a cross-check.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from benchmarks.common import NAMESPACE, TENANT, Env, outgoing, prepublish, wait_drained
from benchmarks.workerproc import rss_kib, start_cli_worker, worker_config
from infinitic_py.topics import service_topic


@dataclass
class MemoryResult:
    n: int
    max_buffered: int
    milestones: dict[int, dict[str, float]] = field(default_factory=dict)
    sampled_peak_kib: int = 0
    seconds: float = 0.0
    drained: bool = False

    def hwm_mib(self, milestone: int) -> float:
        return self.milestones[milestone]["hwm_kib"] / 1024

    def rss_mib(self, milestone: int) -> float:
        return self.milestones[milestone]["rss_kib"] / 1024


async def run_memory(
    env: Env, milestones: tuple[int, ...] = (10_000, 100_000, 200_000), max_buffered: int = 10_000
) -> MemoryResult:
    n = max(milestones)
    service = env.service_name("Mem")
    topic = service_topic(TENANT, NAMESPACE, service)
    await prepublish(env, topic, outgoing(service, "slow", n))
    worker = start_cli_worker(
        worker_config(
            env.url, env.admin_url, "benchmarks.services:SlowService", service, "slow",
            max_messages=100, max_seconds=0.1, max_buffered=max_buffered, log_level="warning",
        ),
        env={"BENCH_MILESTONES": ",".join(map(str, milestones)), "BENCH_BATCH_SLEEP": "0.05"},
    )
    result = MemoryResult(n, max_buffered)
    sampling = True

    async def sample() -> None:
        while sampling:
            result.sampled_peak_kib = max(result.sampled_peak_kib, rss_kib(worker.pid)[0])
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    try:
        while len(result.milestones) < len(milestones):
            line = await asyncio.wait_for(worker.readline(), timeout=120)
            if not line:
                raise RuntimeError(f"worker exited early:\n{worker.log_tail()}")
            record = json.loads(line)
            result.milestones[int(record["milestone"])] = record
        result.seconds = time.perf_counter() - started
    finally:
        sampling = False
        await sampler
        await worker.stop()
    result.drained = await wait_drained(env, topic, timeout=10.0) == (0, 0)
    return result
