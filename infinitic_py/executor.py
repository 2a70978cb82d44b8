"""ServiceExecutor: one service's consume → decode → route → batch → run → outcomes → ack loop.

Flow of one message (DESIGN §1):
- The receive loop (one task, never cancelled; it ends when the consumer is closed) decodes the
  envelope and the arguments, then routes the task to the ``BatchAccumulator`` group
  ``(method, batch key)`` of a batched method, or straight to execution for a single method.
- A flushed group becomes a *unit*: it waits for a slot of the service's concurrency semaphore,
  runs the user's method (sync ones in this executor's thread pool, async ones awaited), and turns
  the result into one outcome per task: completed (reply), retry (republish with deliver_after),
  or failed for good (TaskFailed reply + dead letter).
- Outcomes are published and confirmed *before* the unit's messages are acked. If an outcome cannot
  be published, every message of the unit is nacked instead (the broker redelivers them; its
  dead-letter policy bounds the loop).

Backpressure: the executor holds at most ``max_buffered_messages`` messages (in accumulators, waiting
for a slot, or running); at the cap the receive loop stops pulling until units finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from infinitic_py import messages as wire
from infinitic_py.accumulator import Batch, BatchAccumulator, BatchLimits, FlushReason
from infinitic_py.context import TaskContext, set_batch_contexts, set_task_context
from infinitic_py.errors import DecodeError, MissingBatchResult, TaskTimeout
from infinitic_py.observability import Metrics
from infinitic_py.retry import NO_RETRY, RetryPolicy
from infinitic_py.service import MethodDefinition, ServiceDefinition
from infinitic_py.topics import WORKER_SUBSCRIPTION, dead_letter_topic, service_topic
from infinitic_py.transport.base import (
    Consumer,
    ConsumerClosed,
    ConsumerSettings,
    OutgoingMessage,
    Producer,
    ReceivedMessage,
    Transport,
    TransportError,
)

GroupKey = tuple[str, str | bytes | None]  # (method, batch key)
_DEDUP_CAPACITY = 10_000  # recently acked (task id, retry) pairs kept to drop redeliveries
_CLOSE_TIMEOUT = 5.0  # seconds for a consumer / producer close during shutdown


@dataclass(slots=True)
class Pending:
    """One received task waiting for (or in) execution."""

    msg: ReceivedMessage
    task: wire.ExecuteTask
    method: MethodDefinition
    args: tuple[Any, ...]
    received_at: float  # loop time


@dataclass(frozen=True, slots=True)
class Completed:
    output: Any


@dataclass(frozen=True, slots=True)
class Failed:
    error: BaseException
    trace: str | None = None


Outcome = Completed | Failed


@dataclass(frozen=True)
class ExecutorSettings:
    tenant: str = "public"
    namespace: str = "default"
    concurrency: int = 10
    retry: RetryPolicy | None = None  # service default; a method's own policy wins
    timeout: float | None = None  # service default; a method's own timeout wins
    max_buffered_messages: int = 10_000
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)
    worker_name: str = "worker"

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_buffered_messages < 1:
            raise ValueError("max_buffered_messages must be >= 1")


class _Instruments:
    """Pre-bound metric children for one method (``labels()`` is too slow for the hot path)."""

    __slots__ = (
        "accumulator_wait",
        "batch_fill",
        "batch_size",
        "completed",
        "contract_errors",
        "handler_duration",
        "received",
        "retried",
    )

    def __init__(self, metrics: Metrics, service: str, method: str) -> None:
        self.received = metrics.tasks_received.labels(service=service, method=method)
        self.completed = metrics.tasks_completed.labels(service=service, method=method)
        self.retried = metrics.tasks_retried.labels(service=service, method=method)
        self.batch_size = metrics.batch_size.labels(service=service, method=method)
        self.batch_fill = metrics.batch_fill_ratio.labels(service=service, method=method)
        self.accumulator_wait = metrics.accumulator_wait_seconds.labels(
            service=service, method=method
        )
        self.handler_duration = metrics.handler_duration_seconds.labels(
            service=service, method=method
        )
        self.contract_errors = metrics.contract_errors.labels(service=service, method=method)


class ServiceExecutor:
    def __init__(
        self,
        definition: ServiceDefinition,
        transport: Transport,
        settings: ExecutorSettings,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.definition = definition
        self.service = definition.name
        self.settings = settings
        self._transport = transport
        self._metrics = metrics or Metrics()
        self._instruments = {
            name: _Instruments(self._metrics, self.service, name) for name in definition.methods
        }
        self._log = structlog.get_logger("infinitic_py.executor").bind(service=self.service)
        self.topic = service_topic(settings.tenant, settings.namespace, self.service)
        self.dlq_topic = dead_letter_topic(settings.tenant, settings.namespace, self.service)
        self._accumulator: BatchAccumulator[GroupKey, Pending] = BatchAccumulator(
            self._limits_for, max_buffered=settings.max_buffered_messages
        )
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._pool = ThreadPoolExecutor(
            max_workers=settings.concurrency, thread_name_prefix=f"infinitic-{self.service}"
        )
        self._consumer: Consumer | None = None
        self._producers: dict[str, Producer] = {}
        self._producer_lock = asyncio.Lock()
        self._receive_task: asyncio.Task[None] | None = None
        self._units: set[asyncio.Task[None]] = set()
        self._held = 0  # messages received and not yet acked / nacked
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._stopping = False
        self._consuming = False
        self._in_flight = 0
        self._done: OrderedDict[tuple[str, int], None] = OrderedDict()  # recently acked tasks
        self._running: set[tuple[str, int]] = set()
        self._unit_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def consuming(self) -> bool:
        """True while the receive loop runs (readiness)."""
        return self._consuming

    @property
    def held(self) -> int:
        return self._held

    async def start(self) -> None:
        """Subscribe and start consuming; returns once the consumer is connected."""
        self._loop = asyncio.get_running_loop()
        consumer_settings = self.settings.consumer
        if consumer_settings.max_redeliveries is not None and not consumer_settings.dead_letter_topic:
            consumer_settings = _replace(consumer_settings, dead_letter_topic=self.dlq_topic)
        if consumer_settings.consumer_name is None:
            consumer_settings = _replace(
                consumer_settings, consumer_name=f"{self.settings.worker_name}-{self.service}"
            )
        self._consumer = await self._transport.subscribe(
            self.topic, WORKER_SUBSCRIPTION, consumer_settings
        )
        # Read at scrape time: nothing to update on the hot path.
        self._metrics.buffered_messages.labels(service=self.service).set_function(
            lambda: self._held
        )
        self._metrics.batches_in_flight.labels(service=self.service).set_function(
            lambda: self._in_flight
        )
        self._consuming = True
        self._receive_task = asyncio.create_task(
            self._receive_loop(), name=f"infinitic-receive-{self.service}"
        )
        self._log.info(
            "executor.started",
            topic=self.topic,
            concurrency=self.settings.concurrency,
            methods=sorted(self.definition.methods),
            batched={
                n: {"max_messages": m.batch.limits.max_messages,
                    "max_seconds": m.batch.limits.max_seconds}
                for n, m in self.definition.methods.items() if m.batch
            },
        )

    async def stop(self, grace: float = 30.0) -> None:
        """Graceful drain: stop receiving, flush open groups, let running units finish within
        ``grace`` seconds, nack what is left, close. Nothing is acked that did not complete."""
        if self._stopping:
            return
        self._stopping = True
        self._capacity.set()  # wake a receive loop paused on backpressure
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        flushed = self._accumulator.flush_all(FlushReason.SHUTDOWN)
        for batch in flushed:
            self._launch_batch(batch)
        self._log.info(
            "executor.draining", open_groups=len(flushed), units=len(self._units), held=self._held
        )
        if self._units:
            _, late = await asyncio.wait(set(self._units), timeout=max(0.0, deadline - loop.time()))
            if late:
                self._log.warning("executor.grace_exceeded", units=len(late), grace=grace)
                for unit in late:
                    unit.cancel()  # a cancelled unit nacks its messages
                await asyncio.wait(late, timeout=5.0)
        if self._consumer is not None:
            try:
                # Ends the receive loop with ConsumerClosed. Bounded: with the broker gone, a
                # close would otherwise wait for the client's operation timeout.
                await asyncio.wait_for(self._consumer.close(), _CLOSE_TIMEOUT)
            except (TransportError, TimeoutError) as exc:
                self._log.warning("executor.consumer_close_failed", error=str(exc) or "timeout")
        if self._receive_task is not None:
            try:
                await asyncio.wait_for(self._receive_task, timeout=5.0)
            except (TimeoutError, asyncio.CancelledError):
                self._receive_task.cancel()
        for producer in list(self._producers.values()):
            with contextlib.suppress(TransportError, TimeoutError):
                await asyncio.wait_for(producer.close(), _CLOSE_TIMEOUT)
        self._producers.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._consuming = False
        self._log.info("executor.stopped", held=self._held)

    # ------------------------------------------------------------------ receive path

    async def _receive_loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        backoff = 0.1
        try:
            while True:
                if self._held >= self.settings.max_buffered_messages and not self._stopping:
                    self._capacity.clear()
                    await self._capacity.wait()
                try:
                    msg = await consumer.receive()
                except ConsumerClosed:
                    return
                except TransportError as exc:
                    self._log.warning("receive.failed", error=str(exc), retry_in=backoff)
                    await asyncio.sleep(backoff)  # reconnect backoff, not a wait for an event
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                if self._stopping:
                    consumer.negative_acknowledge([msg])  # goes back to the next worker
                    return
                try:
                    self._on_message(msg)
                except Exception:  # a bug of ours must not stop consuming: give it back
                    self._log.exception("message.routing_failed")
                    self._spawn(self._finish([msg], ack=False))
        finally:
            self._consuming = False

    def _on_message(self, msg: ReceivedMessage) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        self._held += 1
        try:
            task = wire.decode_execute(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._metrics.decode_errors.labels(service=self.service).inc()
            self._spawn(self._dead_letter_undecodable(msg, exc))
            return
        key = (task.task_id, task.retry_sequence)
        if key in self._done:
            self._log.info("task.duplicate_acked", task_id=task.task_id)
            self._spawn(self._finish([msg], ack=True))
            return
        if key in self._running:
            self._spawn(self._finish([msg], ack=False))  # comes back once the first copy is done
            return
        method = self.definition.methods.get(task.method)
        if method is None:
            self._spawn(self._reject(msg, task, "unknown_method", DecodeError(
                f"service {self.service} has no task method {task.method!r}")))
            return
        try:
            args = method.args_decoder.decode(task.args)
        except Exception as exc:  # msgspec errors, or whatever a type's __post_init__ raises
            self._spawn(self._reject(msg, task, "not_retryable", DecodeError(
                f"arguments of {method.qualified} do not match its signature: {exc}")))
            return
        self._running.add(key)
        self._instruments[method.name].received.inc()
        pending = Pending(msg, task, method, args, now)
        if method.batch is None:
            self._launch_unit(method, [pending], None, FlushReason.SIZE)
            return
        group: GroupKey = (method.name, task.batch_key())
        is_new = group not in self._accumulator
        for batch in self._accumulator.add(group, pending, now):
            self._launch_batch(batch)
        if is_new and group in self._accumulator:
            deadline = self._accumulator.deadline_of(group)
            assert deadline is not None
            loop.call_at(deadline, self._flush_due)

    def _flush_due(self) -> None:
        loop = self._loop
        assert loop is not None
        for batch in self._accumulator.flush_due(loop.time() + 1e-3):
            self._launch_batch(batch)

    def _limits_for(self, key: GroupKey) -> BatchLimits:
        batch = self.definition.methods[key[0]].batch
        assert batch is not None
        return batch.limits

    # ------------------------------------------------------------------ execution

    def _launch_batch(self, batch: Batch[GroupKey, Pending]) -> None:
        method = batch.items[0].method
        inst = self._instruments[method.name]
        inst.batch_size.observe(len(batch.items))
        inst.batch_fill.observe(len(batch.items) / batch.limits.max_messages)
        self._metrics.batch_flush.labels(
            service=self.service, method=method.name, reason=batch.reason.value
        ).inc()
        now = time.monotonic() if self._loop is None else self._loop.time()
        inst.accumulator_wait.observe(now - batch.items[0].received_at)  # the longest wait
        self._launch_unit(method, batch.items, batch.key[1], batch.reason)

    def _launch_unit(
        self,
        method: MethodDefinition,
        items: list[Pending],
        batch_key: str | bytes | None,
        reason: FlushReason,
    ) -> None:
        unit = asyncio.create_task(self._run_unit(method, items, batch_key, reason))
        self._units.add(unit)
        unit.add_done_callback(self._units.discard)

    def _spawn(self, coro: Any) -> None:
        unit: asyncio.Task[None] = asyncio.create_task(coro)
        self._units.add(unit)
        unit.add_done_callback(self._units.discard)

    async def _run_unit(
        self,
        method: MethodDefinition,
        items: list[Pending],
        batch_key: str | bytes | None,
        reason: FlushReason,
    ) -> None:
        batch_id = uuid.uuid4().hex if method.batch is not None else None
        log = self._log.bind(method=method.name, batch_id=batch_id, size=len(items))
        if method.batch is not None:
            log.debug("batch.flushed", reason=reason.value, batch_key=_show_key(batch_key))
        settled = False
        try:
            async with self._slots:
                self._in_flight += 1
                try:
                    started = time.perf_counter()
                    outcomes = await self._execute(method, items, batch_id, log)
                    duration = time.perf_counter() - started
                    self._instruments[method.name].handler_duration.observe(duration)
                finally:
                    self._in_flight -= 1
            await self._publish_outcomes(method, items, outcomes, log)
            settled = True
            await self._finish([p.msg for p in items], ack=True, tasks=items)
            if method.batch is not None:
                failed = sum(isinstance(o, Failed) for o in outcomes)
                log.info(
                    "batch.completed",
                    reason=reason.value,
                    completed=len(items) - failed,
                    failed=failed,
                    duration_ms=round(duration * 1000, 2),
                )
        except asyncio.CancelledError:
            if not settled:
                await self._finish([p.msg for p in items], ack=False, tasks=items)
            raise
        except TransportError as exc:
            # Cannot make the outcomes durable: give the messages back. Pulsar's dead-letter
            # policy (max redeliveries) stops a batch that can never be published from looping.
            log.error("outcomes.publish_failed", error=str(exc))
            await self._finish([p.msg for p in items], ack=False, tasks=items)
        except Exception:  # a bug of ours: never lose the messages over it
            log.exception("unit.crashed")
            await self._finish([p.msg for p in items], ack=False, tasks=items)

    async def _execute(
        self,
        method: MethodDefinition,
        items: list[Pending],
        batch_id: str | None,
        log: Any,
    ) -> list[Outcome]:
        timeout = method.timeout if method.timeout is not None else self.settings.timeout
        cancelled = threading.Event()
        contexts = {p.task.task_id: self._context(p, batch_id, log, cancelled) for p in items}
        if method.batch is None:
            (pending,) = items
            context = contexts[pending.task.task_id]
            try:
                output = await self._call(
                    method.fn, pending.args, method.is_async, timeout, [context], single=context
                )
                return [Completed(output)]
            except Exception as exc:
                return [Failed(exc, traceback.format_exc())]
        batch = method.batch
        inputs = {p.task.task_id: batch.wrap(p.args) for p in items}
        by_id = await self._call_batch(method, inputs, contexts, timeout, log)
        outcomes: list[Outcome] = []
        for p in items:
            outcomes.append(by_id[p.task.task_id])
        return outcomes

    async def _call_batch(
        self,
        method: MethodDefinition,
        inputs: dict[str, Any],
        contexts: dict[str, TaskContext],
        timeout: float | None,
        log: Any,
    ) -> dict[str, Outcome]:
        batch = method.batch
        assert batch is not None
        ctxs = [contexts[t] for t in inputs]
        try:
            result = await self._call(
                batch.fn, (dict(inputs),), batch.is_async, timeout, ctxs,  # a copy it may mutate
                batch_contexts={t: contexts[t] for t in inputs},
            )
        except Exception as exc:
            if batch.isolate_failures and len(inputs) > 1 and not isinstance(exc, TaskTimeout):
                ids = list(inputs)
                half = len(ids) // 2
                log.info("batch.isolating_failure", error=repr(exc), size=len(ids))
                out: dict[str, Outcome] = {}
                for part in (ids[:half], ids[half:]):
                    out.update(await self._call_batch(
                        method, {t: inputs[t] for t in part}, contexts, timeout, log))
                return out
            trace = traceback.format_exc()
            return {t: Failed(exc, trace) for t in inputs}
        if result is None:
            return {t: Completed(None) for t in inputs}
        if not isinstance(result, dict):
            error = TypeError(
                f"batch method {batch.fn_name} returned {type(result).__name__}, "
                "expected dict[str, output] or None"
            )
            return {t: Failed(error) for t in inputs}
        extras = [k for k in result if k not in inputs]
        if extras:
            self._instruments[method.name].contract_errors.inc(len(extras))
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
        return outcomes

    async def _call(
        self,
        fn: Callable[..., Any] | None,
        args: Sequence[Any],
        is_async: bool,
        timeout: float | None,
        contexts: list[TaskContext],
        *,
        single: TaskContext | None = None,
        batch_contexts: dict[str, TaskContext] | None = None,
    ) -> Any:
        assert fn is not None
        ctx = contextvars.copy_context()
        if single is not None:
            ctx.run(set_task_context, single)
        if batch_contexts is not None:
            ctx.run(set_batch_contexts, batch_contexts)
        loop = asyncio.get_running_loop()
        call: asyncio.Future[Any]
        if is_async:
            call = asyncio.ensure_future(loop.create_task(fn(*args), context=ctx))
        else:
            call = loop.run_in_executor(self._pool, ctx.run, fn, *args)
        try:
            if timeout is None:
                return await call
            # Only our own deadline is a TaskTimeout: a handler's own TimeoutError stays itself.
            done, _ = await asyncio.wait({call}, timeout=timeout)
            if not done:
                call.cancel()
                for c in contexts:
                    c.cancelled.set()  # a sync handler sees it; its late result is discarded
                raise TaskTimeout(f"{fn.__name__} exceeded its timeout of {timeout}s")
            return call.result()
        except asyncio.CancelledError:
            for c in contexts:
                c.cancelled.set()
            call.cancel()
            raise

    def _context(
        self, p: Pending, batch_id: str | None, log: Any, cancelled: threading.Event
    ) -> TaskContext:
        task = p.task
        return TaskContext(
            task_id=task.task_id,
            service=self.service,
            method=task.method,
            batch_key=_show_key(task.batch_key()),
            meta=task.meta,
            tags=tuple(task.tags),
            retry_index=task.retry_index,
            retry_sequence=task.retry_sequence,
            batch_id=batch_id,
            worker_name=self.settings.worker_name,
            redelivery_count=p.msg.redelivery_count,
            logger=log,
            cancelled=cancelled,
        )

    # ------------------------------------------------------------------ outcomes

    def _policy(self, method: MethodDefinition) -> RetryPolicy:
        return method.retry or self.settings.retry or NO_RETRY

    async def _publish_outcomes(
        self,
        method: MethodDefinition,
        items: list[Pending],
        outcomes: list[Outcome],
        log: Any,
    ) -> None:
        by_topic: dict[str, list[OutgoingMessage]] = {}
        inst = self._instruments[method.name]
        completed = 0
        policy = self._policy(method)
        for p, outcome in zip(items, outcomes, strict=True):
            task = p.task
            if isinstance(outcome, Completed):
                if not task.reply_to:  # nobody waits for it: nothing to encode or send
                    completed += 1
                    continue
                try:
                    output = wire.encode_value(outcome.output)
                except (TypeError, msgspec.EncodeError) as exc:
                    outcome = Failed(exc, traceback.format_exc())
                else:
                    completed += 1
                    if task.reply_to:
                        reply = wire.TaskCompleted(
                            task_id=task.task_id, service=self.service, method=task.method,
                            output=output, retry_index=task.retry_index,
                            batch_id=None, worker=self.settings.worker_name,
                        )
                        by_topic.setdefault(task.reply_to, []).append(
                            OutgoingMessage(wire.encode(reply)))
                    continue
            error = outcome.error
            self._metrics.tasks_failed.labels(
                service=self.service, method=method.name, error_type=type(error).__name__
            ).inc()
            delay = (
                None if isinstance(error, DecodeError)
                else policy.next_delay(task.retry_index, type(error))
            )
            if delay is not None:
                inst.retried.inc()
                retry = msgspec.structs.replace(
                    task,
                    retry_index=task.retry_index + 1,
                    retry_sequence=task.retry_sequence + 1,
                    emitted_at=wire.now(),
                )
                props = wire.properties_for(retry)
                by_topic.setdefault(self.topic, []).append(OutgoingMessage(
                    wire.encode(retry), props, deliver_after=delay,
                    partition_key=props.get(wire.PROP_BATCH_KEY)))  # key_shared affinity
                log.info(
                    "task.retry_scheduled", task_id=task.task_id, retry_index=retry.retry_index,
                    delay_s=round(delay, 3), error_type=type(error).__name__, error=str(error),
                )
                continue
            reason = "retries_exhausted" if policy.is_retryable(type(error)) and not isinstance(
                error, DecodeError) else "not_retryable"
            self._failed_for_good(by_topic, p.msg.data, task, error, outcome.trace, reason, log)
        if completed:
            inst.completed.inc(completed)
        await self._publish(by_topic)

    def _failed_for_good(
        self,
        by_topic: dict[str, list[OutgoingMessage]],
        payload: bytes,
        task: wire.ExecuteTask,
        error: BaseException,
        trace: str | None,
        reason: str,
        log: Any,
    ) -> None:
        error_type = type(error).__name__
        if task.reply_to:
            reply = wire.TaskFailedReply(
                task_id=task.task_id, service=self.service, method=task.method,
                error_type=error_type, message=str(error), traceback=trace,
                retry_index=task.retry_index, worker=self.settings.worker_name,
            )
            by_topic.setdefault(task.reply_to, []).append(OutgoingMessage(wire.encode(reply)))
        letter = wire.DeadLetter(
            reason=reason, error_type=error_type, message=str(error), traceback=trace,
            retry_index=task.retry_index, task_id=task.task_id, service=self.service,
            method=task.method, payload=payload, failed_at=wire.now(),
            worker=self.settings.worker_name,
        )
        by_topic.setdefault(self.dlq_topic, []).append(OutgoingMessage(
            wire.encode(letter), {"reason": reason, "taskId": task.task_id,
                                  "errorType": error_type}))
        self._metrics.tasks_dead_lettered.labels(service=self.service, reason=reason).inc()
        log.warning(
            "task.dead_lettered", task_id=task.task_id, reason=reason, error_type=error_type,
            error=str(error), retry_index=task.retry_index,
        )

    async def _reject(
        self, msg: ReceivedMessage, task: wire.ExecuteTask, reason: str, error: Exception
    ) -> None:
        """A task that can never run (unknown method, arguments that do not decode)."""
        by_topic: dict[str, list[OutgoingMessage]] = {}
        self._failed_for_good(by_topic, msg.data, task, error, None, reason, self._log)
        await self._publish_then_finish(msg, by_topic)

    async def _dead_letter_undecodable(self, msg: ReceivedMessage, exc: Exception) -> None:
        letter = wire.DeadLetter(
            reason="undecodable", error_type=type(exc).__name__, message=str(exc),
            traceback=None, retry_index=0, task_id=msg.properties.get(wire.PROP_TASK_ID),
            service=self.service, method=msg.properties.get(wire.PROP_METHOD),
            payload=msg.data, failed_at=wire.now(), worker=self.settings.worker_name,
        )
        self._metrics.tasks_dead_lettered.labels(service=self.service, reason="undecodable").inc()
        self._log.warning("message.undecodable", error=str(exc), size=len(msg.data))
        await self._publish_then_finish(msg, {self.dlq_topic: [OutgoingMessage(
            wire.encode(letter), {"reason": "undecodable", "errorType": type(exc).__name__})]})

    async def _publish_then_finish(
        self, msg: ReceivedMessage, by_topic: dict[str, list[OutgoingMessage]]
    ) -> None:
        try:
            await self._publish(by_topic)
        except TransportError as exc:
            self._log.error("outcomes.publish_failed", error=str(exc))
            await self._finish([msg], ack=False)
            return
        await self._finish([msg], ack=True)

    async def _publish(self, by_topic: dict[str, list[OutgoingMessage]]) -> None:
        if not by_topic:
            return
        producers = [await self._producer(topic) for topic in by_topic]
        await asyncio.gather(*(
            producer.send_many(msgs) for producer, msgs in zip(producers, by_topic.values(), strict=True)
        ))

    async def _producer(self, topic: str) -> Producer:
        producer = self._producers.get(topic)
        if producer is not None:
            return producer
        async with self._producer_lock:
            producer = self._producers.get(topic)
            if producer is None:
                producer = await self._transport.create_producer(topic)
                self._producers[topic] = producer
            return producer

    async def _finish(
        self,
        msgs: list[ReceivedMessage],
        *,
        ack: bool,
        tasks: Iterable[Pending] = (),
    ) -> None:
        """Ack (outcomes are durable) or nack (they are not) and release capacity."""
        consumer = self._consumer
        assert consumer is not None
        try:
            if ack:
                await consumer.acknowledge(msgs)
            else:
                consumer.negative_acknowledge(msgs)
        except TransportError as exc:
            # The broker will redeliver unacked messages (connection loss) — nothing is lost.
            self._log.warning("finish.failed", ack=ack, count=len(msgs), error=str(exc))
        for p in tasks:
            key = (p.task.task_id, p.task.retry_sequence)
            self._running.discard(key)
            if ack:
                self._done[key] = None
        while len(self._done) > _DEDUP_CAPACITY:
            self._done.popitem(last=False)
        self._held -= len(msgs)
        if not self._capacity.is_set() and self._held < self.settings.max_buffered_messages:
            self._capacity.set()


def _replace(settings: ConsumerSettings, **changes: Any) -> ConsumerSettings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


def _show_key(key: str | bytes | None) -> str | None:
    if key is None or isinstance(key, str):
        return key
    return key.hex()


def _format(error: BaseException) -> str | None:
    if error.__traceback__ is None:
        return None
    return "".join(traceback.format_exception(error))
