"""ServiceExecutor: one service's receive -> route -> launch -> settle loop. Orchestration only:
every decision is made by a part that never calls back into it (DESIGN §1, §5).

- receive: one loop per consumed topic, never cancelled (it ends when its consumer closes); it
  takes the run of messages the client holds (``receive_many``) up to the room it reserved in
  the ledger before waiting (the loops share the ledger: together they never cross its cap).
- route (``routing``): each message -> a ``Pending`` on its method's route, or a ``Rejection``
  (dead-lettered); the ``ledger`` splits fresh attempts from copies of running / settled ones.
- launch: a single method's task runs alone; a batched one joins its ``accumulator`` group,
  flushed by size, by one timer at the earliest group deadline, at the cap, or at shutdown.
  Each unit takes a slot of the concurrency semaphore, then ``invoke`` calls the user's code:
  one outcome per task. A dialect's "started" messages are published while the code runs, and
  are durable before the outcomes are published.
- settle: ``outcomes`` turns them into messages per topic; they are published and confirmed
  *before* the unit's messages are acked. A reply topic the broker refuses fails only the tasks
  replying there (dead-lettered, ``reply_unpublishable``); if the worker's own topics (service,
  retry, dead-letter) cannot take them, every message of the unit is nacked (the broker
  redelivers; its dead-letter policy bounds the loop). The ledger closes the books.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from operator import attrgetter
from typing import Any

import structlog

from infinitic_py.observability import Metrics
from infinitic_py.priority import DEFAULT_PRIORITY, Band, band_of
from infinitic_py.producers import CLOSE_TIMEOUT, ProducerCache, dialect_producers
from infinitic_py.retry import NO_RETRY
from infinitic_py.service import MethodDefinition, ServiceDefinition
from infinitic_py.transport.base import (
    Consumer,
    ConsumerClosed,
    ReceivedMessage,
    Transport,
    TransportError,
)
from infinitic_py.wire import Dialect, key_text
from infinitic_py.wire.bulk import expand_sized as expand_bulks
from infinitic_py.wire.native import NativeDialect
from infinitic_py.worker import outcomes
from infinitic_py.worker.accumulator import Batch, BatchAccumulator, FlushReason
from infinitic_py.worker.consumers import Consumers
from infinitic_py.worker.instruments import ServiceInstruments
from infinitic_py.worker.invoke import Invoker
from infinitic_py.worker.ledger import CopyAction, Ledger
from infinitic_py.worker.priority import PrioritySlots
from infinitic_py.worker.publish import publish_plan
from infinitic_py.worker.routing import GroupKey, Pending, Rejection, Router
from infinitic_py.worker.settings import ExecutorSettings
from infinitic_py.worker.settle import Settler

_group_of = attrgetter("group")
_MAX_PRODUCERS = 64  # open producers (mostly clients' reply topics) per executor
# A reply producer unused this long is closed, so that a client deleting its response topic at
# close does not see it recreated by this producer's reconnect (issue 16).
_REPLY_PRODUCER_IDLE = 30.0
# How long a unit cancelled at the end of the drain gets to nack its messages (_end_late_units).
_CANCELLED_WAIT = 1.0


class ServiceExecutor:
    def __init__(self, definition: ServiceDefinition, transport: Transport,
                 settings: ExecutorSettings, *, metrics: Metrics | None = None,
                 dialect: Dialect[Any] | None = None) -> None:
        self.definition = definition
        self.service = definition.name
        self.settings = settings
        self._transport = transport
        self._dialect = dialect or NativeDialect(settings.tenant, settings.namespace)
        self._metrics = metrics or Metrics()
        self._instruments = ServiceInstruments(self._metrics, self.service, definition.methods)
        self._log = structlog.get_logger("infinitic_py.executor").bind(service=self.service)
        self._stdlog = logging.getLogger("infinitic_py.executor")
        self._subscriptions = [s for s in self._dialect.subscriptions(self.service)
                               if s.role == "execute"]
        self.topic = self._subscriptions[0].topic
        self.dlq_topic = self._dialect.dead_letter_topic(self.service)
        self._router = Router(definition, self._dialect)
        self._ledger = Ledger(settings.max_buffered_messages, settings.max_buffered_bytes)
        self._accumulator: BatchAccumulator[GroupKey, Pending] = BatchAccumulator()
        self._invoker = Invoker.for_service(self.service, settings)
        self.health_problem = self._invoker.health_problem  # readiness: None or why not
        self._slots = PrioritySlots(  # higher bands first (worker/priority.py)
            settings.concurrency, counters={b: self._metrics.units_started.labels(
                service=self.service, band=b.name.lower()) for b in Band})
        self._producers = ProducerCache(
            dialect_producers(transport, self._dialect), _MAX_PRODUCERS,
            pinned=(*(s.topic for s in self._subscriptions), self.dlq_topic),
            max_idle=_REPLY_PRODUCER_IDLE)
        self._consumers = Consumers(self._subscriptions, settings.consumer,
                                    f"{settings.worker_name}-{self.service}", self._log,
                                    keep_dead_letters=self.dlq_topic)
        self._settler = Settler(self._producers, self._consumers, self._ledger,
                                self._instruments, self._dialect, self.service,
                                settings.worker_name, self._log)
        self._receivers: list[asyncio.Task[None]] = []
        self._units: set[asyncio.Task[None]] = set()
        self._settling: set[asyncio.Task[Any]] = set()  # units publishing / acking outcomes
        self._timer: asyncio.TimerHandle | None = None  # fires at the earliest group deadline
        self._timer_at: float | None = None
        self._stopping = False
        self._in_flight = 0
        # Batch ids: 48 random bits per executor, then a counter (a uuid4 per batch cost more
        # than the rest of a small batch's bookkeeping).
        self._batch_prefix = uuid.uuid4().hex[:12] + "-"
        self._batch_seq = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def consuming(self) -> bool:
        """True while every receive loop runs (readiness)."""
        return bool(self._receivers) and not any(r.done() for r in self._receivers)

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics this executor consumes (the first: ``topic``)."""
        return tuple(s.topic for s in self._subscriptions)

    @property
    def held(self) -> int:
        return self._ledger.held

    async def start(self) -> None:
        """Subscribe and start consuming; returns once the consumers are connected."""
        self._loop = asyncio.get_running_loop()
        await self._consumers.subscribe(self._transport)
        self._producers.sweep_every(_REPLY_PRODUCER_IDLE / 2)  # until the producers' close()
        self._metrics.buffered_messages.labels(service=self.service).set_function(
            lambda: self._ledger.held)  # read at scrape time: nothing to update on the hot path
        self._metrics.batches_in_flight.labels(service=self.service).set_function(
            lambda: self._in_flight)
        self._receivers = [asyncio.create_task(self._receive_loop(c), name="receive")
                           for c in self._consumers]
        self._log.info(
            "executor.started", topic=self.topic, concurrency=self.settings.concurrency,
            methods=sorted(self.definition.methods),
            batched={n: {"max_messages": r.limits.max_messages,
                         "max_seconds": r.limits.max_seconds}
                     for n, r in self._router.routes.items() if r.limits})

    async def stop(self, grace: float = 30.0) -> None:
        """Graceful drain: stop receiving, flush open groups, let running units finish within
        ``grace`` seconds, nack what is left, close. Nothing is acked that did not complete."""
        if self._stopping:
            return
        self._stopping = True
        self._ledger.open()  # wake a receive loop paused on backpressure
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        flushed = self._accumulator.flush_all(FlushReason.SHUTDOWN)
        for batch in flushed:
            self._launch(batch)
        self._log.info("executor.draining", open_groups=len(flushed), units=len(self._units),
                       held=self._ledger.held)
        late: set[asyncio.Task[None]] = set()
        while self._units and not late:  # units spawned during the drain are waited for too
            _, late = await asyncio.wait(set(self._units), timeout=max(0.0, deadline - loop.time()))
        if late:
            self._log.warning("executor.grace_exceeded", units=len(late), grace=grace,
                              settling=len(late & self._settling))
            await _end_late_units(late, self._settling)
        await self._consumers.close()  # ends the receive loops
        if self._receivers:
            _, stuck = await asyncio.wait(self._receivers, timeout=CLOSE_TIMEOUT)
            for receiver in stuck:
                receiver.cancel()
        await self._producers.close()
        self._invoker.shutdown()
        self._log.info("executor.stopped", held=self._ledger.held)

    def abort(self) -> int:
        """Forced shutdown (a second signal): cancel every unit now (each nacks its messages, even
        one publishing its outcomes: its tasks may run again). Returns how many were held."""
        for unit in list(self._units):
            unit.cancel()
        return self._ledger.held

    # ------------------------------------------------------------------ receive, route

    async def _receive_loop(self, consumer: Consumer) -> None:
        ledger = self._ledger
        want = 1  # room to reserve: doubles while runs fill it, else twice the last run
        backoff = 0.1
        while True:
            if ledger.full and not self._stopping:
                await ledger.wait_for_room()
                continue
            # Room is reserved before the await (the loops of a service's topics share the
            # ledger): the message cap is never crossed. A quiet topic's loop holds at most
            # twice its last run. The byte cap may be crossed by one run per loop.
            reserved = ledger.reserve(want)
            msgs: list[ReceivedMessage] = []
            held = False
            try:
                msgs = await consumer.receive_many(max(1, reserved))
                ledger.unreserve(reserved)
                want = min(ledger.max_held, 2 * want if len(msgs) >= reserved else 2 * len(msgs))
                reserved = 0
                if self._stopping:  # they go back to the next worker
                    await self._consumers.give_back_unrun(msgs)
                    return
                # An atomic bulk -> its tasks (settled as one: Consumers).
                tasks, size = expand_bulks(msgs)
                ledger.hold(len(tasks), size)
                msgs, held = tasks, True
                routed, rejected = self._router.route_many(msgs)
            except ConsumerClosed:
                ledger.unreserve(reserved)
                return
            except Exception as exc:  # the broker, or a bug of ours: never stop consuming
                ledger.unreserve(reserved)
                if isinstance(exc, TransportError):
                    self._log.warning("receive.failed", error=str(exc), retry_in=backoff)
                else:
                    self._log.exception("receive.crashed", retry_in=backoff)
                if msgs:  # give the run back
                    self._spawn(self._settler.give_back_run(msgs, held))
                await asyncio.sleep(backoff)  # reconnect backoff, not a wait for an event
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            self._on_routed(routed, rejected)

    def _on_routed(self, routed: list[Pending], rejected: list[Rejection]) -> None:
        """The hot path: split fresh attempts from copies, launch or accumulate."""
        fresh, copies = self._ledger.admit(routed)
        now, instruments = self._now(), self._instruments.methods
        for group, run in itertools.groupby(fresh, _group_of):  # runs of one group at a time
            items = list(run)
            route, handed = items[0].route, 0  # handed: items handed to a unit / accumulator
            try:
                instruments[route.name].received_pending += len(items)
                if route.limits is None:
                    for p in items:  # each task alone
                        self._start_unit(route.method, [p], None, FlushReason.SIZE)
                        handed += 1
                    continue
                batches = self._accumulator.add_many(group, items, now, route.limits)
                handed = len(items)
                for batch in batches:
                    self._launch(batch)
            except Exception:  # a bug of ours (before they joined a unit): give them back
                self._log.exception("message.routing_failed")
                if handed < len(items):
                    self._spawn(self._settler.give_back(items[handed:]))
        if self._ledger.full:  # at the cap: the group due first goes now
            for batch in self._accumulator.flush_oldest(FlushReason.MEMORY):
                self._launch(batch)
        self._arm_timer()
        for inst in self._instruments.methods.values():  # one counter update per run, not per task
            if inst.received_pending:
                inst.received.inc(inst.received_pending)
                inst.received_pending = 0
        for rejection in rejected:
            self._spawn(self._settler.reject(rejection))
        if copies:
            self._answer_copies(copies)

    def _answer_copies(self, copies: list[Pending]) -> None:
        """Copies of running attempts wait for them (parked); the others are answered now."""
        for copy in copies:
            verdict = self._settler.triage(copy)
            if verdict.action is CopyAction.RERUN:  # still held: settled like any other task now
                self._on_rerun(copy)
            elif verdict.action is CopyAction.WAIT and not self._stopping:
                self._ledger.park(copy)
            else:
                self._spawn(self._settler.answer_copy(copy, verdict))

    def _arm_timer(self) -> None:
        """Keep one timer, at the earliest deadline of the open groups."""
        deadline = self._accumulator.next_deadline()
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer = self._loop.call_at(deadline, self._flush_due)
        self._timer_at = deadline

    def _flush_due(self) -> None:
        self._timer = self._timer_at = None
        try:
            for batch in self._accumulator.flush_due(self._now() + 1e-3):
                self._launch(batch)
        except Exception:  # a bug of ours must not stop the timer
            self._log.exception("batch.flush_failed")
        self._arm_timer()

    def _now(self) -> float:
        return time.monotonic() if self._loop is None else self._loop.time()

    # ------------------------------------------------------------------ launch, run

    def _launch(self, batch: Batch[GroupKey, Pending]) -> None:
        """Start a flushed batch's unit; if that fails, give its tasks back (all popped)."""
        try:
            route = batch.items[0].route
            self._instruments.methods[route.name].batch_flushed(batch, self._now())
            self._start_unit(route.method, batch.items, batch.key[1], batch.reason)
        except Exception:
            self._log.exception("batch.launch_failed", size=len(batch.items))
            self._spawn(self._settler.give_back(batch.items))

    def _start_unit(self, method: MethodDefinition, items: list[Pending],
                    batch_key: str | bytes | None, reason: FlushReason) -> None:
        self._spawn(self._run_unit(method, items, batch_key, reason))

    def _spawn(self, coro: Any) -> None:
        unit: asyncio.Task[None] = asyncio.create_task(coro)
        self._units.add(unit)
        unit.add_done_callback(self._unit_done)

    def _unit_done(self, unit: asyncio.Task[None]) -> None:
        self._units.discard(unit)
        if not unit.cancelled() and (exc := unit.exception()) is not None:
            self._log.error("unit.failed", error=repr(exc), exc_info=exc)

    async def _run_unit(self, method: MethodDefinition, items: list[Pending],
                        batch_key: str | bytes | None, reason: FlushReason) -> None:
        batched = method.batch is not None
        batch_id = f"{self._batch_prefix}{next(self._batch_seq):x}" if batched else None
        log = self._log.bind(method=method.name, batch_id=batch_id, size=len(items))
        if batched and self._stdlog.isEnabledFor(logging.DEBUG):
            log.debug("batch.flushed", reason=reason.value, batch_key=key_text(batch_key))
        timeout = method.timeout if method.timeout is not None else self.settings.timeout
        settled = False
        announce: asyncio.Future[None] | None = None
        try:
            async with self._slots.take(band_of(getattr(items[0].task, "priority",
                                                        DEFAULT_PRIORITY))):
                self._in_flight += 1
                try:
                    started = outcomes.started(items, self._dialect)
                    if started.by_topic:  # published while the handler runs (one round trip
                        # less per unit), made durable before the outcomes are published
                        announce = asyncio.ensure_future(
                            self._producers.publish(started.by_topic))
                    began = time.perf_counter()
                    invocation = await self._invoker.run(method, items, batch_id, timeout, log)
                    duration = time.perf_counter() - began
                finally:
                    self._in_flight -= 1
            if announce is not None:
                await announce
            inst = self._instruments.methods[method.name]
            inst.handler_duration.observe(duration)
            if invocation.unknown_ids:
                inst.contract_errors.inc(invocation.unknown_ids)
            plan = outcomes.plan_outcomes(items, invocation.outcomes,
                                          method.retry or self.settings.retry or NO_RETRY,
                                          self._dialect, self.settings.worker_name)
            unit = asyncio.current_task()
            assert unit is not None
            self._settling.add(unit)
            try:
                await publish_plan(self._producers, items, plan, self._dialect, self.settings)
                settled = True  # the outcomes are durable: from here on, the books close
                try:
                    await self._consumers.settle([p.msg for p in items], ack=True)
                finally:
                    parked = self._ledger.settle(items, ack=True, replies=plan.replies)
                    if parked:  # copies that waited for these attempts: answered from them now
                        self._answer_copies(parked)
            finally:
                self._settling.discard(unit)
            self._settler.record(plan, method.name, log)
            if batched and self._stdlog.isEnabledFor(logging.INFO):
                log.info("batch.completed", reason=reason.value, completed=plan.completed,
                         failed=len(items) - plan.completed,
                         duration_ms=round(duration * 1000, 2))
        except asyncio.CancelledError:
            if not settled:
                await self._settler.give_back(items)
            raise
        except TransportError as exc:
            # Cannot make the outcomes durable: give the messages back. Pulsar's dead-letter
            # policy (max redeliveries) stops a batch that can never be published from looping.
            log.error("outcomes.publish_failed", error=str(exc))
            if not settled:
                await self._settler.give_back(items, exc)
        except Exception as exc:  # a bug of ours: never lose the messages over it
            log.exception("unit.crashed")
            if not settled:
                await self._settler.give_back(items, exc)
        finally:
            if announce is not None and not announce.done():
                announce.cancel()  # the unit ended early: its start announcement is moot
            elif announce is not None and not announce.cancelled():
                announce.exception()  # retrieved (a failure was handled above, or moot)

    def _on_rerun(self, p: Pending) -> None:
        if self._stopping:  # the invoker shuts down once the drain ends: back to the broker
            self._spawn(self._settler.give_back([p], ran=False))
            return
        route = p.route
        self._instruments.methods[route.name].received.inc()
        if route.limits is None:
            self._start_unit(route.method, [p], None, FlushReason.SIZE)
            return
        for batch in self._accumulator.add(p.group, p, self._now(), route.limits):
            self._launch(batch)
        self._arm_timer()


async def _end_late_units(late: set[asyncio.Task[None]], settling: set[asyncio.Task[Any]]) -> None:
    """After the grace period: a unit still running its handler is cancelled (it nacks its
    messages); one already publishing its outcomes gets a little longer to ack them (cancelled
    mid-publish, its tasks would run again elsewhere). A unit whose async handler swallows its
    cancellation is left behind after a second: the consumer's close hands its messages back."""
    for unit in late - settling:
        unit.cancel()
    _, still = await asyncio.wait(late, timeout=CLOSE_TIMEOUT if late & settling else _CANCELLED_WAIT)
    for unit in still:
        unit.cancel()
    if still:
        await asyncio.wait(still, timeout=_CANCELLED_WAIT)
