"""LoopWatch: a blocked event loop is named while it blocks, once a stall, and its end logged."""

from __future__ import annotations

import asyncio
import time

import structlog

from infinitic_py import AsyncClient, Worker, task
from infinitic_py.worker.loop_watch import LoopWatch


async def _blocking_handler() -> None:
    time.sleep(0.8)  # noqa: ASYNC251 - the defect under test: blocking code in an async handler


async def test_a_blocked_loop_is_logged_once_with_the_blocking_code() -> None:
    watch = LoopWatch(threshold=0.2, interval=0.05)
    with structlog.testing.capture_logs() as logs:
        watch.start()
        try:
            await asyncio.sleep(0.1)
            await _blocking_handler()
            deadline = time.monotonic() + 5
            while not any(e["event"] == "worker.loop_unblocked" for e in logs):
                assert time.monotonic() < deadline, logs
                await asyncio.sleep(0.02)
        finally:
            watch.stop()
    blocked = [e for e in logs if e["event"] == "worker.loop_blocked"]
    assert len(blocked) == 1, logs
    assert blocked[0]["log_level"] == "warning"
    assert any("_blocking_handler" in line and "time.sleep" in line for line in blocked[0]["where"])
    (unblocked,) = [e for e in logs if e["event"] == "worker.loop_unblocked"]
    assert 0.2 <= unblocked["seconds"] <= 5


async def test_a_responsive_loop_logs_nothing() -> None:
    watch = LoopWatch(threshold=0.3, interval=0.05)
    with structlog.testing.capture_logs() as logs:
        watch.start()
        try:
            for _ in range(20):
                await asyncio.sleep(0.02)
        finally:
            watch.stop()
    assert not [e for e in logs if e["event"].startswith("worker.loop_")]


class Blocking:
    @task
    async def stall(self, seconds: float) -> str:
        time.sleep(seconds)  # noqa: ASYNC251 - the user's mistake the worker names
        return "done"


async def test_the_worker_names_a_handler_blocking_its_loop() -> None:
    worker = Worker("memory://loop-watch", http_port=None)
    worker.add_service(Blocking())
    worker._loop_watch = LoopWatch(threshold=0.2, interval=0.05)
    with structlog.testing.capture_logs() as logs:
        await worker.start()
        try:
            async with AsyncClient("memory://loop-watch") as client:
                deferred = await client.service(Blocking).stall(0.8)
                assert await deferred.result(timeout=10) == "done"
        finally:
            await worker.stop(grace=1)
    blocked = [e for e in logs if e["event"] == "worker.loop_blocked"]
    assert len(blocked) == 1, logs
    assert any("stall" in line and "time.sleep" in line for line in blocked[0]["where"])
    assert worker._loop_watch._thread is None  # stopped with the worker
