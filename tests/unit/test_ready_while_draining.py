"""``/readyz`` while a worker drains (SIGTERM, ``stop()``) says it is draining, not "not
started" (what it answered, on the real broker, for the whole grace period)."""

from __future__ import annotations

import asyncio
import threading

from infinitic_py import AsyncClient, Worker, task
from infinitic_py.transport.memory import reset_broker


class Slow:
    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    @task
    def hold(self, n: int) -> int:
        self.started.set()
        self.release.wait(10)
        return n


async def test_readiness_during_a_drain_says_draining() -> None:
    name = "ready-while-draining"
    url = f"memory://{name}"
    slow = Slow()
    worker = Worker(url, shutdown_grace=10)
    worker.add_service(slow, name="Slow", concurrency=1)
    try:
        await worker.start()
        assert worker.ready() == (True, "ok")
        async with AsyncClient(url, results=False) as client:
            await client.service("Slow").hold(1)
        assert await asyncio.to_thread(slow.started.wait, 10)
        stopping = asyncio.ensure_future(worker.stop())
        await asyncio.sleep(0)  # the stop begins; the held task keeps it draining
        ok, reason = worker.ready()
        slow.release.set()
        await stopping
        assert not ok and reason.startswith("draining"), reason
        assert worker.ready() == (False, "not started")
    finally:
        slow.release.set()
        reset_broker(name)
