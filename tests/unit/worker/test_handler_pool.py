"""HandlerPool: hung handlers are replaced up to max_hung, then the pool says it is unhealthy."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from infinitic_py.worker.handler_pool import HandlerPool


def test_runs_calls_and_reports_errors() -> None:
    pool = HandlerPool(2, 2)
    assert pool.submit(lambda x: x * 2, 21).result(5) == 42
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(5)
    pool.shutdown()


def test_an_abandoned_thread_is_replaced_until_max_hung() -> None:
    release = threading.Event()
    pool = HandlerPool(1, 2)
    hung = [pool.submit(release.wait, 30) for _ in range(1)]
    deadline = time.monotonic() + 5
    while not hung[0].running():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pool.abandon(hung[0])
    assert pool.hung == 1 and pool.healthy
    assert pool.submit(lambda: "served").result(5) == "served"  # by a replacement
    second = pool.submit(release.wait, 30)
    while not second.running():
        time.sleep(0.01)
    pool.abandon(second)
    assert pool.submit(lambda: "still").result(5) == "still"
    third = pool.submit(release.wait, 30)
    while not third.running():
        time.sleep(0.01)
    pool.abandon(third)
    assert pool.hung == 3 and not pool.healthy  # past max_hung: no replacement
    waiting = pool.submit(lambda: "late")
    assert not waiting.done()
    assert pool.threads == 3
    release.set()  # the hung calls return: their threads serve again
    assert waiting.result(5) == "late"
    deadline = time.monotonic() + 5
    while pool.hung:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert pool.healthy and pool.threads <= 3
    pool.shutdown()


def test_abandoning_a_queued_call_cancels_it() -> None:
    release = threading.Event()
    pool = HandlerPool(1, 0)
    busy = pool.submit(release.wait, 30)
    queued = pool.submit(lambda: "never")
    pool.abandon(queued)
    assert queued.cancelled()
    release.set()
    assert busy.result(5) is True
    pool.shutdown(cancel_futures=True)


def test_threads_are_daemons() -> None:
    pool = HandlerPool(1, 1)
    name = pool.submit(lambda: threading.current_thread().daemon).result(5)
    assert name is True
    pool.shutdown()


# submit_async: the executor's way (an asyncio future resolved on its loop by the thread)

async def _poll(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + 5
    while not condition():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)


async def test_submit_async_resolves_on_the_loop() -> None:
    pool = HandlerPool(2, 2)
    loop = asyncio.get_running_loop()
    assert await pool.submit_async(loop, lambda x: x * 2, 21) == 42
    with pytest.raises(ZeroDivisionError):
        await pool.submit_async(loop, lambda: 1 / 0)

    def stop() -> None:
        raise StopIteration  # an asyncio future refuses it: still an error, never a hang

    with pytest.raises(RuntimeError, match="StopIteration"):
        await asyncio.wait_for(pool.submit_async(loop, stop), 5)
    pool.shutdown()


async def test_submit_async_abandoned_before_it_starts_never_runs() -> None:
    release = threading.Event()
    ran: list[str] = []
    pool = HandlerPool(1, 0)
    loop = asyncio.get_running_loop()
    busy = pool.submit_async(loop, release.wait, 30)
    queued = pool.submit_async(loop, ran.append, "queued")
    cancelled = pool.submit_async(loop, ran.append, "cancelled")
    pool.abandon(queued)
    cancelled.cancel()  # cancelling the future is enough
    assert queued.cancelled()
    release.set()
    assert await busy is True
    await pool.submit_async(loop, ran.append, "after")
    assert ran == ["after"]
    pool.shutdown()


async def test_submit_async_abandoned_while_running_is_replaced() -> None:
    release = threading.Event()
    started = threading.Event()
    pool = HandlerPool(1, 1)
    loop = asyncio.get_running_loop()

    def hang() -> str:
        started.set()
        release.wait(30)
        return "late"

    hung = pool.submit_async(loop, hang)
    await _poll(started.is_set)
    hung.cancel()
    pool.abandon(hung)
    assert pool.hung == 1 and pool.healthy
    assert await pool.submit_async(loop, lambda: "served") == "served"  # by a replacement
    release.set()
    await _poll(lambda: pool.hung == 0)
    assert hung.cancelled()  # its late result is dropped
    pool.shutdown()


async def test_shutdown_cancels_queued_async_calls() -> None:
    release = threading.Event()
    pool = HandlerPool(1, 0)
    loop = asyncio.get_running_loop()
    busy = pool.submit_async(loop, release.wait, 30)
    await _poll(lambda: pool._idle == 0 and pool._pending == 0)
    queued = pool.submit_async(loop, lambda: "never")
    pool.shutdown(cancel_futures=True)
    await _poll(queued.cancelled)
    release.set()
    assert await busy is True


def test_a_closed_loop_does_not_stop_the_thread() -> None:
    pool = HandlerPool(1, 0)
    loop = asyncio.new_event_loop()
    future = pool.submit_async(loop, threading.Event().wait, 0.2)
    loop.close()  # nobody waits any more: the thread drops the outcome and serves on
    assert pool.submit(lambda: "next").result(5) == "next"
    assert not future.done()
    pool.shutdown()
