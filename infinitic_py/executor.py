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

Hot path (``make bench`` measures it): the receive loop takes a run of messages per await
(``receive_many``) and routes it in one pass; per task it builds two msgspec objects (the decoded
envelope and a ``Pending``, neither tracked by the cyclic GC); task contexts are built only when a
handler asks. Settled attempts are remembered (``dedup.RecentOutcomes``, with their replies) so a
copy is answered without running again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from infinitic_py import messages as wire
from infinitic_py import tracing
from infinitic_py.accumulator import Batch, BatchAccumulator, BatchLimits, FlushReason
from infinitic_py.context import TaskContext, set_batch_contexts, set_task_context
from infinitic_py.dedup import RecentOutcomes
from infinitic_py.errors import DecodeError, MissingBatchResult, TaskTimeout
from infinitic_py.messages import decode_execute
from infinitic_py.observability import Metrics
from infinitic_py.producers import ProducerCache
from infinitic_py.retry import NO_RETRY, RetryPolicy
from infinitic_py.service import MethodDefinition, ServiceDefinition
from infinitic_py.topics import (
    DLQ_SUBSCRIPTION,
    WORKER_SUBSCRIPTION,
    dead_letter_topic,
    service_topic,
)
from infinitic_py.transport.base import (
    Consumer,
    ConsumerClosed,
    ConsumerSettings,
    OutgoingMessage,
    Producer,
    ReceivedMessage,
    SubscriptionType,
    Transport,
    TransportError,
)

GroupKey = tuple[str, str | bytes | None]  # (method, batch key)
# One attempt of a task: its id for a first attempt (a str caches its hash, and the key is hashed
# five times per task), (task id, retry sequence) for the later ones.
AttemptKey = str | tuple[str, int]


def attempt_key(task: wire.ExecuteTask) -> AttemptKey:
    return task.task_id if not task.retry_sequence else (task.task_id, task.retry_sequence)


class _NotPlain(Exception):
    """A message the hot path leaves to the slow one."""

# Recently settled (task id, retry sequence) attempts kept to answer redelivered copies, and the
# replies kept with them (a larger reply is not kept: a copy then gets no second reply).
_RECENT_CAPACITY = 10_000
_RECENT_REPLY_BYTES = 16 * 1024 * 1024
_KEEP_REPLY_BYTES = 64 * 1024
_CLOSE_TIMEOUT = 5.0  # seconds for a consumer / producer close during shutdown
_MAX_PRODUCERS = 64  # open producers (mostly clients' reply topics) per executor
# ops (issue 16): a reply producer unused this long is closed, so that a client deleting its
# response topic at close does not see it recreated by this producer's reconnect.
_REPLY_PRODUCER_IDLE = 30.0


class Pending(msgspec.Struct, gc=False):
    """One received task waiting for (or in) execution. A Struct: built in a third of the time
    of a slotted class, and one is built per task."""

    msg: ReceivedMessage
    task: wire.ExecuteTask
    args: tuple[Any, ...]
    key: AttemptKey  # one attempt: see attempt_key
    reply: bytes | None = None  # the encoded reply once its outcome is known
    retried: bool = False


@dataclass(frozen=True, slots=True)
class Completed:
    output: Any


@dataclass(frozen=True, slots=True)
class Failed:
    error: BaseException
    trace: str | None = None


@dataclass(frozen=True, slots=True)
class _Settled:
    """What is remembered of a settled attempt: where its reply went, and the reply if kept."""

    reply_to: str | None
    reply: bytes | None


_COMPLETED_NONE = Completed(None)
_NO_PROPERTIES: Mapping[str, str] = {}
_SETTLED_NO_REPLY = _Settled(None, None)
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
        "_flush",
        "_labels",
        "_metrics",
        "accumulator_wait",
        "batch_fill",
        "batch_size",
        "completed",
        "contract_errors",
        "handler_duration",
        "received",
        "received_pending",
        "retried",
    )

    def __init__(self, metrics: Metrics, service: str, method: str) -> None:
        self._metrics = metrics
        self._labels = {"service": service, "method": method}
        self._flush: dict[FlushReason, Any] = {}
        self.received = metrics.tasks_received.labels(service=service, method=method)
        self.received_pending = 0  # received since the last update of ``received``
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

    def flushed(self, reason: FlushReason) -> Any:
        counter = self._flush.get(reason)
        if counter is None:
            counter = self._flush[reason] = self._metrics.batch_flush.labels(
                **self._labels, reason=reason.value)
        return counter


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
        # method name -> (definition, instruments, argument decoder, batched, the group key of
        # its tasks without a batch key): what routing a task needs, in one lookup.
        self._routes: dict[str, tuple[MethodDefinition, _Instruments, Callable[[Any], Any], bool,
                                      GroupKey]] = {
            name: (method, self._instruments[name], method.args_decoder.decode,
                   method.batch is not None, (name, None))
            for name, method in definition.methods.items()
        }
        self._timer: asyncio.TimerHandle | None = None  # fires at the earliest group deadline
        self._timer_at: float | None = None
        self._log = structlog.get_logger("infinitic_py.executor").bind(service=self.service)
        self._stdlog = logging.getLogger("infinitic_py.executor")
        self.topic = service_topic(settings.tenant, settings.namespace, self.service)
        self.dlq_topic = dead_letter_topic(settings.tenant, settings.namespace, self.service)
        self._accumulator: BatchAccumulator[GroupKey, Pending] = BatchAccumulator(
            self._limits_for, max_buffered=settings.max_buffered_messages
        )
        self._slots = asyncio.Semaphore(settings.concurrency)
        # Twice the concurrency: the extra threads are only ever started to stand in for threads
        # still held by sync handlers that timed out (their results are discarded).
        self._pool = ThreadPoolExecutor(
            max_workers=2 * settings.concurrency, thread_name_prefix=f"infinitic-{self.service}"
        )
        self._abandoned_threads = 0
        self._consumer: Consumer | None = None
        # Reply topics come and go with clients: at most _MAX_PRODUCERS producers once idle,
        # never closing the service's own topic or its dead-letter topic.
        self._producers = ProducerCache(
            self._transport.create_producer, _MAX_PRODUCERS, self._evict_producer,
            pinned=(self.topic, self.dlq_topic), max_idle=_REPLY_PRODUCER_IDLE,
        )
        self._sweeper: asyncio.TimerHandle | None = None  # ops (issue 16): idle reply producers
        self._receive_task: asyncio.Task[None] | None = None
        self._units: set[asyncio.Task[None]] = set()
        self._settling: set[asyncio.Task[Any]] = set()  # units publishing / acking outcomes
        self._held = 0  # messages received and not yet acked / nacked
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._stopping = False
        self._consuming = False
        self._in_flight = 0
        self._recent: RecentOutcomes[AttemptKey, _Settled] = RecentOutcomes(
            _RECENT_CAPACITY, _RECENT_REPLY_BYTES)
        self._running: set[AttemptKey] = set()
        # Batch ids: 48 random bits per executor, then a counter (a uuid4 per batch cost more
        # than the rest of a small batch's bookkeeping).
        self._batch_prefix = uuid.uuid4().hex[:12] + "-"
        self._batch_seq = itertools.count(1)
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
        self._sweep_producers()  # ops (issue 16): then every half of the idle time
        consumer_settings = self.settings.consumer
        if consumer_settings.max_redeliveries is not None and not consumer_settings.dead_letter_topic:
            consumer_settings = _replace(consumer_settings, dead_letter_topic=self.dlq_topic)
        if consumer_settings.consumer_name is None:
            consumer_settings = _replace(
                consumer_settings, consumer_name=f"{self.settings.worker_name}-{self.service}"
            )
        # ops (issue 16, shared with issue 14): a durable subscription keeps the dead letters
        # for `infinitic-py dlq` (a topic without one keeps nothing, DESIGN §4).
        with contextlib.suppress(TransportError):
            await self._transport.ensure_subscription(
                self.dlq_topic, DLQ_SUBSCRIPTION, SubscriptionType.SHARED)
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for batch in flushed:
            self._launch_batch(batch)
        self._log.info(
            "executor.draining", open_groups=len(flushed), units=len(self._units), held=self._held
        )
        if self._units:
            _, late = await asyncio.wait(set(self._units), timeout=max(0.0, deadline - loop.time()))
            if late:
                # A unit still running its handler is cancelled (it nacks its messages); one
                # already publishing its outcomes gets a little longer to ack them (cancelled
                # mid-publish, its tasks would run again elsewhere).
                settling = [u for u in late if u in self._settling]
                self._log.warning("executor.grace_exceeded", units=len(late), grace=grace,
                                  settling=len(settling))
                for unit in late:
                    if unit not in self._settling:
                        unit.cancel()
                _, still = await asyncio.wait(late, timeout=_CLOSE_TIMEOUT)
                for unit in still:
                    unit.cancel()
                if still:
                    await asyncio.wait(still, timeout=_CLOSE_TIMEOUT)
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
        for producer in self._producers.drain():
            with contextlib.suppress(TransportError, TimeoutError):
                await asyncio.wait_for(producer.close(), _CLOSE_TIMEOUT)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._consuming = False
        self._log.info("executor.stopped", held=self._held)

    def _sweep_producers(self) -> None:
        """Close reply producers idle for ``_REPLY_PRODUCER_IDLE`` (ops, issue 16)."""
        self._producers.sweep()
        loop = self._loop
        if loop is not None and not self._stopping:
            self._sweeper = loop.call_later(_REPLY_PRODUCER_IDLE / 2, self._sweep_producers)

    def abort(self) -> int:
        """Forced shutdown (a second signal, issue 16): cancel every unit now; a cancelled unit
        nacks its messages (one already publishing its outcomes too: its tasks may then run
        again elsewhere). Returns how many messages were held."""
        for unit in list(self._units):
            unit.cancel()
        return self._held

    # ------------------------------------------------------------------ receive path

    async def _receive_loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        cap = self.settings.max_buffered_messages
        backoff = 0.1
        try:
            while True:
                room = cap - self._held
                if room <= 0 and not self._stopping:
                    self._capacity.clear()
                    await self._capacity.wait()
                    continue
                try:
                    # Every message the client already holds, up to the buffer cap: routing a run
                    # of messages costs one await, not one per message.
                    msgs = await consumer.receive_many(max(1, room))
                except ConsumerClosed:
                    return
                except TransportError as exc:
                    self._log.warning("receive.failed", error=str(exc), retry_in=backoff)
                    await asyncio.sleep(backoff)  # reconnect backoff, not a wait for an event
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                if self._stopping:
                    consumer.negative_acknowledge(msgs)  # they go back to the next worker
                    return
                self._on_messages(msgs)
        finally:
            self._consuming = False

    def _on_messages(self, msgs: list[ReceivedMessage]) -> None:
        """Route a run of received messages: the executor's hot path, one pass, no call per
        message but the two decodes and the accumulator's ``add``. Anything unusual (undecodable,
        duplicate, unknown method, bad arguments) takes ``_on_message``, which sorts it out."""
        loop = self._loop
        assert loop is not None
        now = loop.time()
        self._held += len(msgs)
        recent, previous = self._recent.generations()
        running = self._running
        routes = self._routes
        add = self._accumulator.add
        launch = self._launch_batch
        for msg in msgs:
            try:
                task = decode_execute(msg.data)
                key = task.task_id if not task.retry_sequence else (  # attempt_key, inlined
                    task.task_id, task.retry_sequence)
                if key in recent or key in previous or key in running:
                    raise _NotPlain
                method, inst, decode_args, batched, unkeyed = routes[task.method]
                pending = Pending(msg, task, decode_args(task.args), key)
            except Exception:
                try:
                    self._on_message(msg, now)
                except Exception:  # a bug of ours must not stop consuming: give it back
                    self._log.exception("message.routing_failed")
                    self._spawn(self._settle_messages([msg], ack=False))
                continue
            running.add(key)
            inst.received_pending += 1
            try:
                if not batched:
                    self._launch_unit(method, [pending], None, FlushReason.SIZE)
                    continue
                for batch in add((method.name, task.batch_key()) if task.meta else unkeyed,
                                 pending, now):
                    launch(batch)
            except Exception:
                running.discard(key)
                self._log.exception("message.routing_failed")
                self._spawn(self._settle_messages([msg], ack=False))
        self._arm_timer()
        for inst in self._instruments.values():  # one counter update per run, not per task
            if inst.received_pending:
                inst.received.inc(inst.received_pending)
                inst.received_pending = 0

    def _on_message(self, msg: ReceivedMessage, now: float) -> None:
        """Route one message whatever it holds (the slow path of ``_on_messages``)."""
        try:
            task = decode_execute(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._metrics.decode_errors.labels(service=self.service).inc()
            self._spawn(self._dead_letter_undecodable(msg, exc))
            return
        key = attempt_key(task)
        if key in self._recent:
            self._spawn(self._settle_duplicate(msg, task, key))
            return
        if key in self._running:
            # Another copy of this very attempt is running: this one comes back after the nack
            # delay and is then acked as a duplicate (or runs, if the first copy was nacked).
            self._spawn(self._settle_messages([msg], ack=False))
            return
        route = self._routes.get(task.method)
        if route is None:
            self._spawn(self._reject(msg, task, "unknown_method", DecodeError(
                f"service {self.service} has no task method {task.method!r}")))
            return
        method, inst, decode_args, batched, _ = route
        try:
            args = decode_args(task.args)
        except Exception as exc:  # msgspec errors, or whatever a type's __post_init__ raises
            self._spawn(self._reject(msg, task, "not_retryable", DecodeError(
                f"arguments of {method.qualified} do not match its signature: {exc}")))
            return
        pending = Pending(msg, task, args, key)
        self._running.add(key)
        try:
            inst.received_pending += 1
            if not batched:
                self._launch_unit(method, [pending], None, FlushReason.SIZE)
                return
            for batch in self._accumulator.add((method.name, task.batch_key()), pending, now):
                self._launch_batch(batch)
        except BaseException:
            self._running.discard(key)
            raise

    def _arm_timer(self) -> None:
        """Keep one timer, at the earliest deadline of the open groups."""
        deadline = self._accumulator.next_deadline()
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = self._loop
        assert loop is not None
        self._timer = loop.call_at(deadline, self._flush_due)
        self._timer_at = deadline

    def _flush_due(self) -> None:
        loop = self._loop
        assert loop is not None
        self._timer = self._timer_at = None
        for batch in self._accumulator.flush_due(loop.time() + 1e-3):
            self._launch_batch(batch)
        self._arm_timer()

    def _limits_for(self, key: GroupKey) -> BatchLimits:
        batch = self.definition.methods[key[0]].batch
        assert batch is not None
        return batch.limits

    # ------------------------------------------------------------------ execution

    def _launch_batch(self, batch: Batch[GroupKey, Pending]) -> None:
        items = batch.items
        method = self.definition.methods[batch.key[0]]
        inst = self._instruments[method.name]
        size = len(items)
        inst.batch_size.observe(size)
        inst.batch_fill.observe(size / batch.limits.max_messages)
        inst.flushed(batch.reason).inc()
        now = time.monotonic() if self._loop is None else self._loop.time()
        inst.accumulator_wait.observe(now - batch.opened_at)  # the longest wait
        self._launch_unit(method, items, batch.key[1], batch.reason)

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
        batch_id = (f"{self._batch_prefix}{next(self._batch_seq):x}" if method.batch is not None
                    else None)
        log = self._log.bind(method=method.name, batch_id=batch_id, size=len(items))
        if method.batch is not None and self._stdlog.isEnabledFor(logging.DEBUG):
            log.debug("batch.flushed", reason=reason.value, batch_key=_show_key(batch_key))
        settled = False
        try:
            async with self._slots:
                self._in_flight += 1
                try:
                    started = time.perf_counter()
                    if tracing.ENABLED:  # ops (issue 16): one span per batch, linked to its tasks
                        outcomes = await tracing.run_batch(
                            self.service, method.name, batch_id, items,
                            functools.partial(self._execute, method, items, batch_id, log))
                    else:
                        outcomes = await self._execute(method, items, batch_id, log)
                    duration = time.perf_counter() - started
                    self._instruments[method.name].handler_duration.observe(duration)
                finally:
                    self._in_flight -= 1
            unit = asyncio.current_task()
            assert unit is not None
            self._settling.add(unit)
            try:
                plain = await self._publish_outcomes(method, items, outcomes, log)
                settled = True
                await self._settle(items, ack=True, plain=plain)
            finally:
                self._settling.discard(unit)
            if method.batch is not None and self._stdlog.isEnabledFor(logging.INFO):
                failed = (sum(isinstance(o, Failed) for o in outcomes) if isinstance(outcomes, list)
                          else len(items) if isinstance(outcomes, Failed) else 0)
                log.info(
                    "batch.completed",
                    reason=reason.value,
                    completed=len(items) - failed,
                    failed=failed,
                    duration_ms=round(duration * 1000, 2),
                )
        except asyncio.CancelledError:
            if not settled:
                await self._settle(items, ack=False)
            raise
        except TransportError as exc:
            # Cannot make the outcomes durable: give the messages back. Pulsar's dead-letter
            # policy (max redeliveries) stops a batch that can never be published from looping.
            log.error("outcomes.publish_failed", error=str(exc))
            await self._settle(items, ack=False)
        except Exception:  # a bug of ours: never lose the messages over it
            log.exception("unit.crashed")
            if not settled:
                await self._settle(items, ack=False)

    async def _execute(
        self,
        method: MethodDefinition,
        items: list[Pending],
        batch_id: str | None,
        log: Any,
    ) -> list[Outcome] | Outcome:
        timeout = method.timeout if method.timeout is not None else self.settings.timeout
        cancelled = _Cancellation()
        if method.batch is None:
            (pending,) = items
            context = self._context(pending, batch_id, log, cancelled)
            try:
                output = await self._call(
                    method.fn, pending.args, method.is_async, timeout, cancelled, single=context
                )
                return [Completed(output)]
            except Exception as exc:
                return [Failed(exc, traceback.format_exc())]
        contexts = _BatchContexts(items, functools.partial(
            self._context, batch_id=batch_id, log=log, cancelled=cancelled))
        inputs, unbuildable = _batch_inputs(method, items)
        result: dict[str, Outcome] | Outcome = (
            await self._call_batch(method, inputs, contexts, timeout, cancelled, log)
            if inputs else {}
        )
        if isinstance(result, dict):
            if unbuildable:
                result.update(unbuildable)
            return [result[p.task.task_id] for p in items]
        if unbuildable:
            return [unbuildable.get(p.task.task_id, result) for p in items]
        return result  # one outcome shared by every task

    async def _call_batch(
        self,
        method: MethodDefinition,
        inputs: dict[str, Any],
        contexts: _BatchContexts,
        timeout: float | None,
        cancelled: _Cancellation,
        log: Any,
    ) -> dict[str, Outcome] | Outcome:
        """The outcome of each task, as a dict, or one outcome for every task of ``inputs``."""
        batch = method.batch
        assert batch is not None
        try:
            result = await self._call(
                batch.fn, (dict(inputs),), batch.is_async, timeout, cancelled,  # a copy it may mutate
                batch_contexts=contexts,
            )
        except Exception as exc:
            if batch.isolate_failures and len(inputs) > 1 and not isinstance(exc, TaskTimeout):
                ids = list(inputs)
                half = len(ids) // 2
                log.info("batch.isolating_failure", error=repr(exc), size=len(ids))
                out: dict[str, Outcome] = {}
                for part in (ids[:half], ids[half:]):
                    outcome = await self._call_batch(
                        method, {t: inputs[t] for t in part}, contexts.subset(part), timeout,
                        cancelled, log)
                    out.update(outcome if isinstance(outcome, dict) else dict.fromkeys(part, outcome))
                return out
            return Failed(exc, traceback.format_exc())
        if result is None:
            return _COMPLETED_NONE
        if not isinstance(result, dict):
            return Failed(TypeError(
                f"batch method {batch.fn_name} returned {type(result).__name__}, "
                "expected dict[str, output] or None"
            ))
        if result.keys() == inputs.keys():  # the usual case: one result per task, nothing else
            return {t: Failed(v, _format(v)) if isinstance(v, BaseException) else Completed(v)
                    for t, v in result.items()}
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
        cancelled: _Cancellation,
        *,
        single: TaskContext | None = None,
        batch_contexts: Mapping[str, TaskContext] | None = None,
    ) -> Any:
        assert fn is not None
        if is_async and timeout is None:
            # Awaited right here, in this unit's own task (and so its own copy of the context):
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
        if is_async:
            call = asyncio.ensure_future(loop.create_task(fn(*args), context=ctx))
        elif timeout is None:
            call = loop.run_in_executor(self._pool, ctx.run, fn, *args)
        else:
            # The deadline of a sync handler starts when a pool thread starts it, not while it
            # queues behind a thread still held by an earlier handler that timed out.
            started = loop.create_future()
            call = loop.run_in_executor(self._pool, _run_started, loop, started, ctx, fn, args)
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
                if not is_async:
                    self._abandoned_threads += 1
                    call.add_done_callback(self._thread_returned)
                    self._log.warning(
                        "handler.still_running", handler=fn.__name__, timeout=timeout,
                        abandoned_threads=self._abandoned_threads,
                    )
                raise TaskTimeout(f"{fn.__name__} exceeded its timeout of {timeout}s")
            return call.result()
        except asyncio.CancelledError:
            cancelled.set()
            call.cancel()
            raise

    def _thread_returned(self, _: asyncio.Future[Any]) -> None:
        self._abandoned_threads -= 1

    def _context(
        self, p: Pending, batch_id: str | None, log: Any, cancelled: _Cancellation
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
            cancelled=cancelled.event(),
        )

    # ------------------------------------------------------------------ outcomes

    def _policy(self, method: MethodDefinition) -> RetryPolicy:
        return method.retry or self.settings.retry or NO_RETRY

    async def _publish_outcomes(
        self,
        method: MethodDefinition,
        items: list[Pending],
        outcomes: list[Outcome] | Outcome,
        log: Any,
    ) -> bool:
        """Publish replies, retries and dead letters; True if there was nothing to publish (every
        task completed and nobody waits for a reply)."""
        inst = self._instruments[method.name]
        if not isinstance(outcomes, list):  # one outcome shared by every task
            if type(outcomes) is Completed and not any(p.task.reply_to for p in items):
                inst.completed.inc(len(items))  # the fast path: nothing to publish
                return True
            outcomes = [outcomes] * len(items)
        by_topic: dict[str, list[OutgoingMessage]] = {}
        completed = 0
        policy = self._policy(method)
        for index, (p, outcome) in enumerate(zip(items, outcomes, strict=True)):
            task = p.task
            if type(outcome) is Completed:
                if not task.reply_to:  # nobody waits for it: nothing to encode or send
                    completed += 1
                    continue
                try:
                    output = wire.encode_value(outcome.output)
                except (TypeError, msgspec.EncodeError) as exc:
                    # ops (issue 16): the caller's batch.completed counts read the final outcome.
                    outcome = outcomes[index] = Failed(exc, traceback.format_exc())
                else:
                    completed += 1
                    p.reply = wire.encode(wire.TaskCompleted(
                        task_id=task.task_id, service=self.service, method=task.method,
                        output=output, retry_index=task.retry_index,
                        batch_id=None, worker=self.settings.worker_name,
                    ))
                    by_topic.setdefault(task.reply_to, []).append(OutgoingMessage(p.reply))
                    continue
            assert isinstance(outcome, Failed)
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
                props.update(tracing.carried(p.msg.properties))  # ops (issue 16): keep the trace
                by_topic.setdefault(self.topic, []).append(OutgoingMessage(
                    wire.encode(retry), props, deliver_after=delay,
                    partition_key=props.get(wire.PROP_BATCH_KEY)))  # key_shared affinity
                p.retried = True
                log.info(
                    "task.retry_scheduled", task_id=task.task_id, retry_index=retry.retry_index,
                    delay_s=round(delay, 3), error_type=type(error).__name__, error=str(error),
                )
                continue
            reason = "retries_exhausted" if policy.is_retryable(type(error)) and not isinstance(
                error, DecodeError) else "not_retryable"
            p.reply = self._failed_for_good(
                by_topic, p.msg.data, task, error, outcome.trace, reason, log,
                carry=tracing.carried(p.msg.properties))
        if completed:
            inst.completed.inc(completed)
        await self._publish(by_topic)
        return False

    def _failed_for_good(
        self,
        by_topic: dict[str, list[OutgoingMessage]],
        payload: bytes,
        task: wire.ExecuteTask,
        error: BaseException,
        trace: str | None,
        reason: str,
        log: Any,
        *,
        carry: Mapping[str, str] = _NO_PROPERTIES,
    ) -> bytes | None:
        """Queue the TaskFailed reply (returned, if there is one) and the dead letter (with the
        task's trace properties ``carry``)."""
        error_type = type(error).__name__
        reply: bytes | None = None
        if task.reply_to:
            reply = wire.encode(wire.TaskFailedReply(
                task_id=task.task_id, service=self.service, method=task.method,
                error_type=error_type, message=str(error), traceback=trace,
                retry_index=task.retry_index, worker=self.settings.worker_name,
            ))
            by_topic.setdefault(task.reply_to, []).append(OutgoingMessage(reply))
        letter = wire.DeadLetter(
            reason=reason, error_type=error_type, message=str(error), traceback=trace,
            retry_index=task.retry_index, task_id=task.task_id, service=self.service,
            method=task.method, payload=payload, failed_at=wire.now(),
            worker=self.settings.worker_name,
        )
        by_topic.setdefault(self.dlq_topic, []).append(OutgoingMessage(
            wire.encode(letter), {**carry, "reason": reason, "taskId": task.task_id,
                                  "errorType": error_type}))
        self._metrics.tasks_dead_lettered.labels(
            service=self.service, method=task.method, reason=reason).inc()
        log.warning(
            "task.dead_lettered", task_id=task.task_id, reason=reason, error_type=error_type,
            error=str(error), retry_index=task.retry_index,
        )
        return reply

    async def _reject(
        self, msg: ReceivedMessage, task: wire.ExecuteTask, reason: str, error: Exception
    ) -> None:
        """A task that can never run (unknown method, arguments that do not decode)."""
        by_topic: dict[str, list[OutgoingMessage]] = {}
        self._failed_for_good(by_topic, msg.data, task, error, None, reason, self._log,
                              carry=tracing.carried(msg.properties))
        await self._publish_then_settle(msg, by_topic)

    async def _dead_letter_undecodable(self, msg: ReceivedMessage, exc: Exception) -> None:
        letter = wire.DeadLetter(
            reason="undecodable", error_type=type(exc).__name__, message=str(exc),
            traceback=None, retry_index=0, task_id=msg.properties.get(wire.PROP_TASK_ID),
            service=self.service, method=msg.properties.get(wire.PROP_METHOD),
            payload=msg.data, failed_at=wire.now(), worker=self.settings.worker_name,
        )
        self._metrics.tasks_dead_lettered.labels(
            service=self.service, method=msg.properties.get(wire.PROP_METHOD, ""),
            reason="undecodable").inc()
        self._log.warning("message.undecodable", error=str(exc), size=len(msg.data))
        await self._publish_then_settle(msg, {self.dlq_topic: [OutgoingMessage(
            wire.encode(letter), {"reason": "undecodable", "errorType": type(exc).__name__})]})

    async def _settle_duplicate(
        self, msg: ReceivedMessage, task: wire.ExecuteTask, key: AttemptKey
    ) -> None:
        """A copy of an attempt this worker settled recently: answer it without running again.

        A redelivered copy (same reply topic) gets the reply again, which the client ignores if
        it already has it; a re-dispatch of the same task id by another caller gets it too. When
        no reply was kept (too large, or the attempt was retried) and this copy asks for a reply
        on another topic than the settled one, it runs again: better twice than a caller left
        waiting."""
        settled = self._recent.get(key)
        reply_to = task.reply_to
        if not reply_to or (settled is not None and settled.reply is None
                            and settled.reply_to == reply_to):
            self._metrics.duplicates.labels(service=self.service, action="acked").inc()
            await self._settle_messages([msg], ack=True)
            return
        if settled is not None and settled.reply is not None:
            self._metrics.duplicates.labels(service=self.service, action="replied").inc()
            await self._publish_then_settle(msg, {reply_to: [OutgoingMessage(settled.reply)]})
            return
        self._metrics.duplicates.labels(service=self.service, action="rerun").inc()
        self._recent.discard(key)
        try:  # still counted in _held: it is settled like any other task from here
            self._on_message(msg, time.monotonic() if self._loop is None else self._loop.time())
            self._arm_timer()
        except Exception:
            self._log.exception("message.routing_failed")
            await self._settle_messages([msg], ack=False)

    async def _publish_then_settle(
        self, msg: ReceivedMessage, by_topic: dict[str, list[OutgoingMessage]]
    ) -> None:
        try:
            await self._publish(by_topic)
        except TransportError as exc:
            self._log.error("outcomes.publish_failed", error=str(exc))
            await self._settle_messages([msg], ack=False)
            return
        await self._settle_messages([msg], ack=True)

    async def _publish(self, by_topic: dict[str, list[OutgoingMessage]]) -> None:
        if not by_topic:
            return
        with self._producers.using(*by_topic):
            producers = [await self._producers.get(topic) for topic in by_topic]
            await asyncio.gather(*(
                producer.send_many(msgs)
                for producer, msgs in zip(producers, by_topic.values(), strict=True)
            ))

    def _evict_producer(self, producer: Producer) -> None:
        self._spawn(self._close_producer(producer))

    async def _close_producer(self, producer: Producer) -> None:
        try:
            await asyncio.wait_for(producer.close(), _CLOSE_TIMEOUT)
        except (TransportError, TimeoutError) as exc:
            self._log.debug("producer.close_failed", topic=producer.topic, error=str(exc))

    async def _settle(self, items: list[Pending], *, ack: bool, plain: bool = False) -> None:
        """Ack (outcomes are durable) or nack (they are not) a unit's tasks; remember the acked
        attempts (and their replies) so that a redelivered copy is not run again. ``plain``: no
        task of the unit has a reply or a retry (nothing to remember but the attempt)."""
        await self._settle_messages([p.msg for p in items], ack=ack)
        keys = [p.key for p in items]
        self._running.difference_update(keys)
        if not ack:
            return
        recent = self._recent
        if plain:
            recent.add_many(keys, _SETTLED_NO_REPLY)
            return
        for p in items:
            reply = p.reply
            if reply is None and not p.retried:
                recent.add(p.key, _SETTLED_NO_REPLY if p.task.reply_to is None
                           else _Settled(p.task.reply_to, None))
            elif reply is not None and len(reply) <= _KEEP_REPLY_BYTES:
                recent.add(p.key, _Settled(p.task.reply_to, reply), len(reply))
            else:
                recent.add(p.key, _Settled(p.task.reply_to, None))

    async def _settle_messages(self, msgs: list[ReceivedMessage], *, ack: bool) -> None:
        """Ack or nack messages and release their buffer capacity."""
        consumer = self._consumer
        assert consumer is not None
        try:
            if ack:
                await consumer.acknowledge(msgs)
            else:
                consumer.negative_acknowledge(msgs)
        except TransportError as exc:
            # The broker will redeliver unacked messages (connection loss) — nothing is lost.
            self._log.warning("settle.failed", ack=ack, count=len(msgs), error=str(exc))
        self._held -= len(msgs)
        if not self._capacity.is_set() and self._held < self.settings.max_buffered_messages:
            self._capacity.set()


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
