"""An AsyncClient lives in the event loop it first ran in (its response receive task, the
futures of the results it awaits). Used from a second ``asyncio.run()`` (a script calling
``asyncio.run`` twice, a test framework's loop per test), a dispatch went out and its result
never came: a silent ``ResultTimeout``. Now it is a one-line RuntimeError saying what to do, and
``close()`` works from any loop (it raised "Event loop is closed" and left the response topic)."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from infinitic_py import AsyncClient, ClientClosed, Deferred, Worker, task
from infinitic_py.transport.memory import reset_broker


class Echo:
    @task
    def echo(self, x: int) -> int:
        return x


def test_a_client_used_from_a_second_event_loop_says_so_and_closes_from_any_loop() -> None:
    name = f"loops-{uuid.uuid4().hex[:8]}"
    url = f"memory://{name}"
    client = AsyncClient(url)

    async def first() -> Deferred[int]:
        worker = Worker(url)
        worker.add_service(Echo())
        async with worker:
            deferred = await client.service(Echo).method(Echo.echo)(1)
            assert await deferred.result(timeout=10) == 1
            return deferred

    async def second(deferred: Deferred[int]) -> None:
        with pytest.raises(RuntimeError, match="another event loop than the one it first ran in"):
            await asyncio.wait_for(client.service(Echo).echo(2), 10)
        with pytest.raises(RuntimeError, match="another event loop"):
            await asyncio.wait_for(deferred.result(timeout=5), 10)
        await asyncio.wait_for(client.close(), 10)  # was: RuntimeError: Event loop is closed
        with pytest.raises(ClientClosed):
            await client.service(Echo).echo(3)

    try:
        deferred = asyncio.run(first())
        asyncio.run(second(deferred))
    finally:
        reset_broker(name)


def test_close_from_another_thread_runs_in_the_clients_own_loop() -> None:
    name = f"loops-thread-{uuid.uuid4().hex[:8]}"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        client = AsyncClient(f"memory://{name}")

        async def dispatch() -> Deferred[int]:
            return await client.service("Nobody").echo(1)  # no worker: it stays awaited

        deferred = asyncio.run_coroutine_threadsafe(dispatch(), loop).result(10)
        waiting = asyncio.run_coroutine_threadsafe(deferred.result(timeout=30), loop)
        asyncio.run(asyncio.wait_for(client.close(), 10))
        with pytest.raises(ClientClosed):
            waiting.result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        reset_broker(name)


def test_close_from_another_loop_ends_the_awaits_of_a_stopped_loop() -> None:
    """A loop driven by run_until_complete, stopped between calls: close() from a new loop
    fails the results it awaited, so a later run of that loop does not wait for them forever."""
    name = f"loops-stopped-{uuid.uuid4().hex[:8]}"
    loop = asyncio.new_event_loop()
    try:
        client = AsyncClient(f"memory://{name}")
        deferred = loop.run_until_complete(client.service("Nobody").echo(1))
        asyncio.run(asyncio.wait_for(client.close(), 10))
        with pytest.raises(ClientClosed):
            loop.run_until_complete(deferred.result())
    finally:
        loop.close()
        reset_broker(name)
