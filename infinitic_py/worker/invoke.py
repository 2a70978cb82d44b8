"""Invoke: calling user code. Sync handlers run in this part's ``HandlerPool`` (long-lived daemon
threads fed by a queue; a handler that overruns its timeout is abandoned and its thread replaced,
up to ``max_hung``; past that the service is not ready), async ones are awaited; timeouts, task contexts (built only when a handler asks), the batch contract, and
failure isolation (a failing batch is split in halves when the method asks for it).

``Invoker.run`` ALWAYS returns one outcome per task, in the order of the tasks: whatever the user
code does (raise, time out, return a wrong shape, or an output that does not fit the declared
result type: ``results``), it never raises but for cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from infinitic_py import tracing
from infinitic_py.context import TaskContext, set_batch_contexts, set_task_context
from infinitic_py.errors import DecodeError, MissingBatchResult, TaskTimeout
from infinitic_py.service import MethodDefinition
from infinitic_py.wire import key_text
from infinitic_py.worker.handler_pool import HandlerPool
from infinitic_py.worker.outcomes import COMPLETED_NONE, Completed, Failed, Outcome
from infinitic_py.worker.results import ResultCheck, result_check
from infinitic_py.worker.routing import Pending
from infinitic_py.worker.settings import ExecutorSettings

# What user code may raise that fails its task(s): any Exception, and SystemExit /
# KeyboardInterrupt raised by the handler itself (``sys.exit()`` in an argparse-style helper). Out
# of a unit's task, those two would stop the event loop: the worker dying without a drain, and
# the task, redelivered, killing the next worker too. (The worker's own SIGINT / SIGTERM are
# handled by the loop, never raised in a handler.) Cancellation is never caught here.
_HANDLER_ERRORS = (Exception, SystemExit, KeyboardInterrupt)


class _Escaped(Exception):
    """Carries a handler's SystemExit / KeyboardInterrupt out of the task it ran in."""

    def __init__(self, error: SystemExit | KeyboardInterrupt) -> None:
        super().__init__(repr(error))
        self.error = error


async def _contained(coro: Any) -> Any:
    try:
        return await coro
    except (SystemExit, KeyboardInterrupt) as exc:
        raise _Escaped(exc) from None


@dataclass(frozen=True, slots=True)
class Invocation:
    outcomes: list[Outcome]  # one per task, in order
    unknown_ids: int = 0  # ids a batch method returned that were not in its input (dropped)


class Invoker:
    """Calls one service's handlers. ``threads``: the threads that run sync handlers (the
    concurrency); ``max_hung``: how many threads held by handlers past their timeout (or the
    shutdown grace) are replaced (their results are discarded)."""

    def __init__(self, service: str, worker_name: str, threads: int, max_hung: int = 8) -> None:
        self.service = service
        self.worker_name = worker_name
        self._pool = HandlerPool(threads, max_hung, name=f"infinitic-{service}")
        self._log = structlog.get_logger("infinitic_py.executor").bind(service=service)
        self._checks: dict[str, ResultCheck | None] = {}  # per method name, built on first use

    @classmethod
    def for_service(cls, service: str, settings: ExecutorSettings) -> Invoker:
        """One thread per unit of concurrency; ``max_hung_handlers`` replaced when hung."""
        return cls(service, settings.worker_name, settings.concurrency,
                   settings.hung_handlers_cap)

    def health_problem(self) -> str | None:
        """Why this service cannot run handlers normally now (readiness), or None."""
        if self._pool.healthy:
            return None
        return (f"{self._pool.hung} sync handlers of {self.service} hung past their timeout "
                f"(more than {self._pool.max_hung} cannot be replaced)")

    def shutdown(self) -> None:
        """Never waits for a handler still running (its daemon thread ends with the process)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def run(
        self,
        method: MethodDefinition,
        items: Sequence[Pending],
        batch_id: str | None,
        timeout: float | None,
        log: Any,
    ) -> Invocation:
        cancelled = _Cancellation()
        # With the otel extra and a tracer provider: one span per unit, linked to each task.
        with tracing.unit_span(self.service, method.name, batch_id, items) as span:
            if method.batch is None:
                outcomes: list[Outcome] = []
                for pending in items:  # a single method's unit holds one task
                    context = self._context(pending, batch_id, log, cancelled)
                    try:
                        output = await self._call(method.fn, pending.args, method.is_async,
                                                  timeout, cancelled, single=context)
                        outcomes.append(Completed(output))
                    except _HANDLER_ERRORS as exc:
                        outcomes.append(Failed(exc, traceback.format_exc()))
                invocation = Invocation(outcomes)
            else:
                contexts = _BatchContexts(items, functools.partial(
                    self._context, batch_id=batch_id, log=log, cancelled=cancelled))
                inputs, unbuildable = _batch_inputs(method, items)
                if not inputs:
                    invocation = Invocation([unbuildable[p.task.task_id] for p in items])
                else:
                    result, unknown = await self._call_batch(method, inputs, contexts, timeout,
                                                             cancelled, log)
                    invocation = Invocation(_in_order(items, result, unbuildable), unknown)
            try:
                check = self._checks[method.name]
            except KeyError:
                check = self._checks[method.name] = result_check(method)
            if check is not None:  # None: declared -> Any, nothing to check
                checked = check(items, invocation.outcomes)
                if checked is not invocation.outcomes:
                    invocation = Invocation(checked, invocation.unknown_ids)
            span.record(items, invocation.outcomes)
        return invocation

    async def _call_batch(
        self,
        method: MethodDefinition,
        inputs: dict[str, Any],
        contexts: _BatchContexts,
        timeout: float | None,
        cancelled: _Cancellation,
        log: Any,
    ) -> tuple[dict[str, Outcome] | Outcome, int]:
        """The outcome of each task of ``inputs`` (or one for all of them), and the number of
        unknown ids the method returned."""
        batch = method.batch
        assert batch is not None
        try:
            result = await self._call(
                batch.fn, (dict(inputs),), batch.is_async, timeout, cancelled,  # a copy it may mutate
                batch_contexts=contexts,
            )
        except _HANDLER_ERRORS as exc:
            if batch.isolate_failures and len(inputs) > 1 and not isinstance(exc, TaskTimeout):
                ids = list(inputs)
                half = len(ids) // 2
                log.info("batch.isolating_failure", error=repr(exc), size=len(ids))
                out: dict[str, Outcome] = {}
                unknown = 0
                for part in (ids[:half], ids[half:]):
                    outcome, extra = await self._call_batch(
                        method, {t: inputs[t] for t in part}, contexts.subset(part), timeout,
                        cancelled, log)
                    unknown += extra
                    out.update(outcome if isinstance(outcome, dict) else dict.fromkeys(part, outcome))
                return out, unknown
            return Failed(exc, traceback.format_exc()), 0
        if result is None:
            return COMPLETED_NONE, 0
        if not isinstance(result, dict):
            return Failed(TypeError(
                f"batch method {batch.fn_name} returned {type(result).__name__}, "
                "expected dict[str, output] or None"
            )), 0
        if result.keys() == inputs.keys():  # the usual case: one result per task, nothing else
            return {t: Failed(v, _format(v)) if isinstance(v, BaseException) else Completed(v)
                    for t, v in result.items()}, 0
        extras = [k for k in result if k not in inputs]
        if extras:
            log.error("batch.unknown_ids", count=len(extras), sample=[str(k) for k in extras[:5]])
        outcomes: dict[str, Outcome] = {}
        for t in inputs:
            if t not in result:
                outcomes[t] = Failed(MissingBatchResult(
                    f"batch method {batch.fn_name} returned no result for task {t}"))
                continue
            value = result[t]
            outcomes[t] = Failed(value, _format(value)) if isinstance(value, BaseException) \
                else Completed(value)
        return outcomes, len(extras)

    async def _call(
        self,
        fn: Callable[..., Any] | None,
        args: Sequence[Any],
        is_async: bool,
        timeout: float | None,
        cancelled: _Cancellation,
        *,
        single: TaskContext | None = None,
        batch_contexts: Mapping[str, TaskContext] | None = None,
    ) -> Any:
        assert fn is not None
        if is_async and timeout is None:
            # Awaited right here, in the unit's own task (and so its own copy of the context):
            # no task of its own to create and schedule.
            if single is not None:
                set_task_context(single)
            if batch_contexts is not None:
                set_batch_contexts(batch_contexts)
            try:
                return await fn(*args)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        ctx = contextvars.copy_context()
        if single is not None:
            ctx.run(set_task_context, single)
        if batch_contexts is not None:
            ctx.run(set_batch_contexts, batch_contexts)
        loop = asyncio.get_running_loop()
        call: asyncio.Future[Any]
        started: asyncio.Future[None] | None = None
        threaded = False  # a sync handler's call, in the pool
        if is_async:
            call = asyncio.ensure_future(loop.create_task(_contained(fn(*args)), context=ctx))
        elif timeout is None:
            call = self._pool.submit_async(loop, ctx.run, fn, *args)
            threaded = True
        else:
            # The deadline of a sync handler starts when a pool thread starts it, not while it
            # waits for a thread.
            started = loop.create_future()
            call = self._pool.submit_async(loop, _run_started, loop, started, ctx, fn, args)
            threaded = True
        try:
            if timeout is None:
                return await call
            if started is not None:
                await asyncio.wait({started, call}, return_when=asyncio.FIRST_COMPLETED)
            # Only our own deadline is a TaskTimeout: a handler's own TimeoutError stays itself.
            done, _ = await asyncio.wait({call}, timeout=timeout)
            if not done:
                call.cancel()
                cancelled.set()  # a sync handler sees it; its late result is discarded
                if threaded:
                    self._pool.abandon(call)  # its thread is replaced (HandlerPool)
                    self._log.warning(
                        "handler.still_running", handler=fn.__name__, timeout=timeout,
                        hung_threads=self._pool.hung, max_hung=self._pool.max_hung,
                    )
                raise TaskTimeout(f"{fn.__name__} exceeded its timeout of {timeout}s")
            return call.result()
        except _Escaped as escaped:
            raise escaped.error  # noqa: B904 (the handler's own, with its traceback)
        except asyncio.CancelledError:
            cancelled.set()
            call.cancel()
            if threaded:
                self._pool.abandon(call)
            raise

    def _context(
        self, p: Pending, batch_id: str | None, log: Any, cancelled: _Cancellation
    ) -> TaskContext:
        task = p.task
        return TaskContext(
            task_id=task.task_id,
            service=self.service,
            method=task.method,
            batch_key=key_text(task.batch_key()),
            meta=task.meta,
            tags=tuple(task.tags),
            retry_index=task.retry_index,
            retry_sequence=task.retry_sequence,
            batch_id=batch_id,
            worker_name=self.worker_name,
            redelivery_count=p.msg.redelivery_count,
            logger=log,
            cancelled=cancelled.event(),
        )


class _Cancellation:
    """A unit's cancellation flag; the ``threading.Event`` that handlers see (through their
    TaskContext) is only made if one asks for it."""

    __slots__ = ("_event", "_is_set")

    def __init__(self) -> None:
        self._event: threading.Event | None = None
        self._is_set = False

    def event(self) -> threading.Event:
        if self._event is None:
            self._event = threading.Event()
            if self._is_set:
                self._event.set()
        return self._event

    def set(self) -> None:
        self._is_set = True
        if self._event is not None:
            self._event.set()


class _BatchContexts(Mapping[str, TaskContext]):
    """The TaskContexts of a batch, built on first access: most batch methods never ask for
    one, and building them all cost more than the rest of the executor's work per task."""

    __slots__ = ("_built", "_index", "_items", "_make")

    def __init__(
        self, items: Sequence[Pending], make: Callable[[Pending], TaskContext],
        index: dict[str, Pending] | None = None,
    ) -> None:
        self._items = items
        self._make = make
        self._index = index
        self._built: dict[str, TaskContext] = {}

    def _pending(self) -> dict[str, Pending]:
        if self._index is None:
            self._index = {p.task.task_id: p for p in self._items}
        return self._index

    def __getitem__(self, task_id: str) -> TaskContext:
        context = self._built.get(task_id)
        if context is None:
            context = self._built[task_id] = self._make(self._pending()[task_id])
        return context

    def __iter__(self) -> Iterator[str]:
        return iter(self._pending())

    def __len__(self) -> int:
        return len(self._pending())

    def subset(self, task_ids: Iterable[str]) -> _BatchContexts:
        index = self._pending()
        part = _BatchContexts((), self._make, {t: index[t] for t in task_ids})
        part._built = self._built  # one context per task, whichever half asks
        return part


def _batch_inputs(
    method: MethodDefinition, items: Sequence[Pending]
) -> tuple[dict[str, Any], dict[str, Outcome]]:
    """The batch method's input per task; a task whose input cannot be built fails alone."""
    batch = method.batch
    assert batch is not None
    if len(method.param_names) == 1:  # the input is the argument itself
        return {p.task.task_id: p.args[0] for p in items}, {}
    wrap = batch.wrap
    try:
        return {p.task.task_id: wrap(p.args) for p in items}, {}
    except Exception:
        pass
    inputs: dict[str, Any] = {}
    failed: dict[str, Outcome] = {}
    for p in items:
        try:
            inputs[p.task.task_id] = wrap(p.args)
        except Exception as exc:
            failed[p.task.task_id] = Failed(DecodeError(
                f"arguments of {method.qualified} cannot make the input of "
                f"{batch.fn_name}: {exc!r}"), traceback.format_exc())
    return inputs, failed


def _in_order(items: Sequence[Pending], result: dict[str, Outcome] | Outcome,
              unbuildable: dict[str, Outcome]) -> list[Outcome]:
    """Each task's outcome, in the order of ``items``: ``result`` maps task ids to outcomes (or
    is one outcome for all); a task whose input could not be built keeps that failure."""
    if not isinstance(result, dict):  # one outcome shared by every task
        if not unbuildable:
            return [result] * len(items)
        return [unbuildable.get(p.task.task_id, result) for p in items]
    if unbuildable:
        result.update(unbuildable)
    return [result[p.task.task_id] for p in items]


def _run_started(
    loop: asyncio.AbstractEventLoop,
    started: asyncio.Future[None],
    ctx: contextvars.Context,
    fn: Callable[..., Any],
    args: Sequence[Any],
) -> Any:
    """In a pool thread: tell the loop the handler starts now, then run it."""
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_set_started, started)
    return ctx.run(fn, *args)


def _set_started(started: asyncio.Future[None]) -> None:
    if not started.done():
        started.set_result(None)


def _format(error: BaseException) -> str | None:
    if error.__traceback__ is None:
        return None
    return "".join(traceback.format_exception(error))
