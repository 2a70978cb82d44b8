"""The services the benchmarks run. Importable by path (``benchmarks.services:SlowService``) so
the worker CLI can load them from a config file."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from benchmarks.common import Order
from infinitic_py import get_context, task


class NoopService:
    """A batched no-op: measures the worker, not the work."""

    @task
    def noop(self, order: Order) -> None:
        return None

    @noop.batch(max_messages=100, max_seconds=0.05)
    async def noop_batch(self, orders: dict[str, Order]) -> None:
        return None


class SyncNoopService:
    """The same no-op with a sync batch method (a plain ``def``, as in the README): the worker
    runs it in its thread pool."""

    @task
    def noop(self, order: Order) -> None:
        return None

    @noop.batch(max_messages=100, max_seconds=0.05)
    def noop_batch(self, orders: dict[str, Order]) -> None:
        return None


class EchoService:
    """Returns a small value per task (end-to-end: the client awaits it)."""

    @task
    def echo(self, order: Order) -> int:
        return order.amount_cents

    @echo.batch(max_messages=100, max_seconds=0.05)
    async def echo_batch(self, orders: dict[str, Order]) -> dict[str, int]:
        return {task_id: order.amount_cents for task_id, order in orders.items()}


def _rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB, from /proc (Linux)."""
    rss = hwm = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


class SlowService:
    """A slow batch method that reports the process RSS on stdout at task-count milestones
    (``BENCH_MILESTONES``, comma-separated): the memory benchmark reads those lines."""

    def __init__(self) -> None:
        self.processed = 0
        self.sleep = float(os.environ.get("BENCH_BATCH_SLEEP", "0.05"))
        self.milestones = sorted(
            int(m) for m in os.environ.get("BENCH_MILESTONES", "10000,100000").split(",") if m
        )

    @task
    def slow(self, order: Order) -> None:
        return None

    @slow.batch(max_messages=100, max_seconds=0.1)
    async def slow_batch(self, orders: dict[str, Order]) -> None:
        await asyncio.sleep(self.sleep)
        self.processed += len(orders)
        while self.milestones and self.processed >= self.milestones[0]:
            rss, hwm = _rss_kib()
            line = {"milestone": self.milestones.pop(0), "processed": self.processed,
                    "rss_kib": rss, "hwm_kib": hwm, "t": time.monotonic()}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()


class FlushService:
    """``tick``: a batched no-op that stamps (event-loop time) when each task's batch method
    started, for the flush-accuracy benchmark."""

    def __init__(self, expected: int = 0) -> None:
        self.started: dict[str, float] = {}
        self.expected = expected
        self.all_started = asyncio.Event()

    @task
    def tick(self, order: Order) -> None:
        return None

    @tick.batch(max_messages=100, max_seconds=0.1)
    async def tick_batch(self, orders: dict[str, Order]) -> None:
        now = asyncio.get_running_loop().time()
        for task_id in orders:
            self.started[task_id] = now
        if len(self.started) >= self.expected:
            self.all_started.set()


class FleetService:
    """``fleet``: a batched no-op that appends ``<worker> <size> <key,key,...>`` per batch to
    ``$RECORD_FILE`` (``$FLEET_WORKER`` names the process), for the fleet benchmark."""

    def __init__(self) -> None:
        self.who = os.environ.get("FLEET_WORKER") or str(os.getpid())
        self.path = os.environ["RECORD_FILE"]

    @task
    def fleet(self, order: Order) -> None:
        return None

    @fleet.batch(max_messages=100, max_seconds=2.0)
    def fleet_batch(self, orders: dict[str, Order]) -> None:
        keys = sorted({get_context(t).batch_key or "" for t in orders})
        with open(self.path, "a") as f:
            f.write(f"{self.who} {len(orders)} {','.join(keys)}\n")
