"""A second SIGINT / SIGTERM during the drain exits at once and nacks what the worker holds."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from infinitic_py import AsyncClient, Worker, task
from infinitic_py.errors import ForcedShutdown
from infinitic_py.topics import WORKER_SUBSCRIPTION, service_topic
from infinitic_py.transport.memory import get_broker, reset_broker


class Stuck:
    def __init__(self) -> None:
        self.started = 0

    @task
    async def hang(self, n: int) -> int:
        self.started += 1
        await asyncio.Event().wait()  # never returns: only a cancellation ends it
        return n


async def wait_until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_second_signal_nacks_held_messages_and_returns_at_once() -> None:
    url = "memory://forced-shutdown"
    stuck = Stuck()
    worker = Worker(url, shutdown_grace=120.0)
    worker.add_service(stuck, concurrency=3)
    running = asyncio.create_task(worker.run_until_signalled())
    try:
        async with AsyncClient(url, results=False) as client:
            await client.service(Stuck).hang.many([1, 2, 3])
        await wait_until(lambda: stuck.started == 3)
        os.kill(os.getpid(), signal.SIGINT)
        await wait_until(lambda: worker.executors and worker.executors[0]._stopping)
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(ForcedShutdown, match="3 held message"):
            await asyncio.wait_for(running, 15.0)  # far below the 120 s grace
        broker = get_broker("forced-shutdown")
        topic = service_topic("public", "default", "Stuck")
        deadline = time.monotonic() + 10
        while broker.subscription_counts(topic, WORKER_SUBSCRIPTION) != (3, 0):
            assert time.monotonic() < deadline, broker.subscription_counts(topic,
                                                                           WORKER_SUBSCRIPTION)
            await asyncio.sleep(0.05)
    finally:
        if not running.done():
            running.cancel()
        reset_broker("forced-shutdown")


@pytest.mark.parametrize("timeout", [None, 0.5])
def test_sigterm_exits_when_an_async_handler_swallows_its_cancellation(
    timeout: float | None,
) -> None:
    """Before: the drain gave up on the handler, but ``asyncio.run``'s teardown waited for its
    task without limit: the process never exited (with or without a handler timeout)."""
    import subprocess
    import sys
    from pathlib import Path

    grace = 1.0
    args = [sys.executable, "-m", "tests.unit.stubborn_worker", str(grace)]
    if timeout is not None:
        args.append(str(timeout))
    started = time.monotonic()
    proc = subprocess.run(args, cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          text=True, timeout=60, check=False)
    took = time.monotonic() - started
    assert proc.returncode == 0 and "exited" in proc.stdout, proc.stdout[-3000:] + proc.stderr
    # start + grace + a bounded wait for the cancelled handler, far from a hang
    assert took < grace + 8, f"took {took:.1f}s"
