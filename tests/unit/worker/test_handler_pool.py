"""HandlerPool: hung handlers are replaced up to max_hung, then the pool says it is unhealthy."""

from __future__ import annotations

import threading
import time

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
