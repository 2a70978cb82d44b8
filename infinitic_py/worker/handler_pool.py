"""HandlerPool: the threads that run sync handlers, which a hung handler cannot hold.

A thread cannot be killed: a sync handler that overruns its timeout keeps its thread until it
returns. With a fixed pool (``ThreadPoolExecutor``) a few such handlers held every thread, so
normal tasks queued behind them, and the interpreter waited for them at exit (its pool threads
are joined), far past the shutdown grace period. Here:

- threads are daemon threads: the process exits without waiting for a handler still running;
- a caller that stops waiting (timeout, shutdown) calls ``abandon(future)``: the thread running
  it no longer counts toward ``size``, and a replacement is started for the next call, so
  ``size`` threads stay available. When an abandoned call finally returns, its thread serves
  again (or ends, if the pool already has ``size`` others);
- at most ``max_hung`` abandoned threads are replaced (``size + max_hung`` threads at most):
  past that fewer than ``size`` threads serve, and ``healthy`` turns False, which the worker
  reports as not ready.

A ``concurrent.futures.Executor``: ``loop.run_in_executor(pool, ...)`` works as with any pool.
``submit_async`` is the executor's way (one unit of work per call): the thread resolves an
asyncio future through one ``call_soon_threadsafe``, with no ``concurrent.futures.Future``
and no chain of callbacks between the two (``asyncio.wrap_future``) on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from queue import SimpleQueue
from typing import Any, ParamSpec, TypeVar

__all__ = ["HandlerPool"]

P = ParamSpec("P")
T = TypeVar("T")


class _Work:
    __slots__ = ("abandoned", "args", "cancelled", "fn", "future", "kwargs", "loop", "running")

    def __init__(self, future: Future[Any] | asyncio.Future[Any], fn: Callable[..., Any],
                 args: tuple[Any, ...], kwargs: dict[str, Any],
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.loop = loop  # set: ``future`` is an asyncio future of this loop
        self.running = False
        self.abandoned = False
        self.cancelled = False  # an asyncio future's call that must not start


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """On the loop: hand a call's outcome to its asyncio future (unless it was cancelled)."""
    if future.done():
        return
    if ok:
        future.set_result(value)
    elif isinstance(value, StopIteration):  # an asyncio future refuses it (TypeError)
        future.set_exception(RuntimeError(f"the handler raised {value!r}"))
    else:
        future.set_exception(value)


class HandlerPool(Executor):
    def __init__(self, size: int, max_hung: int, name: str = "handler") -> None:
        if size < 1 or max_hung < 0:
            raise ValueError(f"size must be >= 1 and max_hung >= 0, got {size}, {max_hung}")
        self.size = size
        self.max_hung = max_hung
        self._name = name
        self._queue: SimpleQueue[_Work | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for work (or about to)
        self._pending = 0  # calls queued, not yet taken by a thread
        self._works: dict[Future[Any] | asyncio.Future[Any], _Work] = {}
        # Read-only outside the pool (changed under its lock):
        self.threads = 0  # threads started and not ended: serving, idle, or hung
        self.hung = 0  # threads running a call nobody waits for any more
        self._shutdown = False
        self._ids = itertools.count(1)

    @property
    def healthy(self) -> bool:
        """False once more than ``max_hung`` threads are hung: fewer than ``size`` threads are
        left to run handlers, and calls may wait for one."""
        return self.hung <= self.max_hung

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        self._enqueue(_Work(future, fn, args, kwargs))
        return future

    def submit_async(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T],
                     *args: Any) -> asyncio.Future[T]:
        """Like ``submit``, for a caller on ``loop`` (the thread resolves the returned future
        on it). Cancelling the future before a thread starts the call, or ``abandon``-ing it,
        keeps the call from starting."""
        future: asyncio.Future[T] = loop.create_future()
        self._enqueue(_Work(future, fn, args, {}, loop))
        return future

    def _enqueue(self, work: _Work) -> None:
        future = work.future
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a HandlerPool after shutdown")
            self._works[future] = work
            self._queue.put(work)
            self._pending += 1
            if self._idle >= self._pending:
                return  # an idle thread takes it
            if self.threads < self.size + min(self.hung, self.max_hung):
                self.threads += 1
                threading.Thread(target=self._serve, name=f"{self._name}-{next(self._ids)}",
                                 daemon=True).start()

    def abandon(self, future: Future[Any] | asyncio.Future[Any]) -> None:
        """The caller no longer waits for ``future``: not started, it never starts; running,
        its thread stops counting toward ``size`` (a replacement may start). A future of
        ``submit_async`` is abandoned from its loop."""
        with self._lock:
            work = self._works.get(future)
            if work is None or work.abandoned:
                return
            if not work.running:
                work.cancelled = True
                future.cancel()
                return
            work.abandoned = True
            self.hung += 1

    def _serve(self) -> None:
        queue = self._queue
        while True:
            with self._lock:
                self._idle += 1
            work = queue.get()
            with self._lock:
                self._idle -= 1
                if work is None:
                    self.threads -= 1
                    return
                self._pending -= 1
                future = work.future
                if isinstance(future, Future):
                    skip = not future.set_running_or_notify_cancel()
                else:  # an asyncio future: read here, written on its loop (a flag, atomic)
                    skip = work.cancelled or future.cancelled()
                del future
                if skip:
                    self._works.pop(work.future, None)
                    continue
                work.running = True
            try:
                result = work.fn(*work.args, **work.kwargs)
            except BaseException as exc:
                outcome: tuple[bool, Any] = (False, exc)
            else:
                outcome = (True, result)
            with self._lock:
                self._works.pop(work.future, None)
                leave = False
                if work.abandoned:
                    self.hung -= 1
                    if self.threads - self.hung > self.size:  # replaced meanwhile
                        self.threads -= 1
                        leave = True
            future = work.future
            if not isinstance(future, Future):
                assert work.loop is not None
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    work.loop.call_soon_threadsafe(_resolve, future, *outcome)
            elif outcome[0]:
                future.set_result(outcome[1])
            else:
                future.set_exception(outcome[1])
            del work, outcome, future
            if leave:
                return

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the idle threads; never waits for a running handler (``wait`` is ignored:
        a hung handler would hold the caller)."""
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            if cancel_futures:
                for work in list(self._works.values()):
                    if work.running:
                        continue
                    work.cancelled = True
                    if work.loop is None:
                        work.future.cancel()
                    else:  # cancelled on its loop (the caller may be on another thread)
                        with contextlib.suppress(RuntimeError):
                            work.loop.call_soon_threadsafe(work.future.cancel)
            for _ in range(self.threads):
                self._queue.put(None)
