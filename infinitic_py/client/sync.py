"""``Client``: the ``AsyncClient`` surface for plain scripts and threads (an ``AsyncClient`` on a
private event loop thread), with its sync stubs and deferreds."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import threading
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, Unpack

from infinitic_py.client.core import AsyncClient
from infinitic_py.client.stubs import CallOptions, Deferred, ServiceStub, StubMethod
from infinitic_py.errors import ClientClosed
from infinitic_py.service import TaskMethod

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

class SyncDeferred(Generic[R]):
    __slots__ = ("_client", "_deferred", "task_id")

    def __init__(self, deferred: Deferred[R], client: Client) -> None:
        self._deferred = deferred
        self._client = client
        self.task_id = deferred.task_id

    def result(self, timeout: float | None = None) -> R:
        return self._client._run(self._deferred.result(timeout))

    def done(self) -> bool:
        return self._deferred.done()

    def __repr__(self) -> str:
        return f"SyncDeferred(task_id={self.task_id!r})"


class SyncStubMethod(Generic[P, R]):
    def __init__(self, method: StubMethod[P, R], client: Client) -> None:
        self._method = method
        self._client = client

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> SyncDeferred[R]:
        return SyncDeferred(self._client._run(self._method(*args, **kwargs)), self._client)

    def many(self, items: Iterable[Any], *, atomic: bool = False) -> list[SyncDeferred[R]]:
        items = list(items)
        return [SyncDeferred(d, self._client)
                for d in self._client._run(self._method.many(items, atomic=atomic))]

    def options(self, **options: Unpack[CallOptions]) -> SyncStubMethod[P, R]:
        """``StubMethod.options``: the same method with per-call options."""
        return SyncStubMethod(self._method.options(**options), self._client)


class SyncServiceStub:
    def __init__(self, stub: ServiceStub, client: Client) -> None:
        self._stub = stub
        self._client = client
        self.name = stub.name

    def __getattr__(self, method: str) -> SyncStubMethod[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        return SyncStubMethod(getattr(self._stub, method), self._client)

    def method(self, task_method: TaskMethod[Any, P, R]) -> SyncStubMethod[P, R]:
        return SyncStubMethod(self._stub.method(task_method), self._client)


class Client:
    """Blocking client with ``AsyncClient``'s surface; safe to share between threads."""

    def __init__(self, url: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="infinitic-client", daemon=True
        )
        self._thread.start()
        # Calls submitted to the loop and not returned yet: close() ends those its loop will
        # never run. The lock orders a submission before or after close() stops the loop.
        self._lock = threading.Lock()
        self._inflight: set[concurrent.futures.Future[Any]] = set()
        self._closing = False
        self._closed = False
        try:
            self._async = self._run(_make_client(url, options))
        except BaseException:
            self._stop_loop()
            raise
        self.name = self._async.name

    def _run(self, coro: Awaitable[T]) -> T:
        with self._lock:
            if self._closed:
                if inspect.iscoroutine(coro):
                    coro.close()  # never run: no "coroutine was never awaited" warning
                raise ClientClosed("client is closed")
            future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
                _awaitable(coro), self._loop
            )
            self._inflight.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._closed:  # ended by close(): its loop stopped before it could finish
                raise ClientClosed("client is closed") from None
            raise
        finally:
            with self._lock:
                self._inflight.discard(future)

    def service(self, service: type[Any] | str, **options: Any) -> SyncServiceStub:
        """``AsyncClient.service``'s stub, with its keyword options (``meta``, ``tags``,
        ``results``, ``name``), made sync."""
        return SyncServiceStub(self._async.service(service, **options), self)

    def close(self) -> None:
        """Close the client: pending results and calls of other threads raise ClientClosed."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        try:
            self._run(self._async.close())
        finally:
            with self._lock:
                self._closed = True
                left = list(self._inflight)
            self._stop_loop(left)

    def _stop_loop(self, left: Iterable[concurrent.futures.Future[Any]] = ()) -> None:
        """Stop the loop thread; ``left``: calls submitted that its loop may never run."""
        if self._thread.is_alive():  # end what still runs there (their callers: ClientClosed)
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_others(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        for future in left:  # before close(): a cancelled call's callback reaches its loop
            future.cancel()
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _make_client(url: str, options: Mapping[str, Any]) -> AsyncClient:
    client = AsyncClient(url, **options)
    await client.start()
    return client


async def _cancel_others() -> None:
    """Cancel every other task of the running loop and wait (bounded) for them to end."""
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=5)


async def _awaitable(aw: Awaitable[T]) -> T:
    return await aw
