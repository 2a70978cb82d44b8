"""A worker process (``Worker.run()``, memory://) whose async handler swallows every
cancellation; it SIGTERMs itself once the handler runs and prints ``exited`` when ``run()``
returns. ``python -m tests.unit.stubborn_worker GRACE [TIMEOUT]``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

from infinitic_py import AsyncClient, Worker, task

URL = "memory://stubborn"
started = asyncio.Event()


class Stubborn:
    @task
    async def work(self, n: int) -> int:
        started.set()
        while True:  # a retry loop that swallows every cancellation
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.5)


async def signal_once_running(worker: Worker) -> None:
    while not worker.executors:  # started: consuming  # noqa: ASYNC110 (no event to wait on)
        await asyncio.sleep(0.02)
    async with AsyncClient(URL, results=False) as client:
        await client.service(Stubborn).work(1)
    await started.wait()
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    grace = float(sys.argv[1])
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else None
    worker = Worker(URL, shutdown_grace=grace)
    worker.add_service(Stubborn(), timeout=timeout)
    original = worker.run_until_signalled

    async def run_and_signal() -> None:
        driver = asyncio.ensure_future(signal_once_running(worker))
        try:
            await original()
        finally:
            driver.cancel()

    worker.run_until_signalled = run_and_signal  # type: ignore[method-assign]
    worker.run()
    print("exited", flush=True)


if __name__ == "__main__":
    main()
