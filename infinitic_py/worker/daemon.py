"""Worker: runs one ``ServiceExecutor`` per registered service over one transport.

    worker = Worker("pulsar://127.0.0.1:6650", tenant="public", namespace="default")
    worker.add_service(EmailService(), concurrency=10, retry=RetryPolicy(...), timeout=30.0)
    await worker.start()   # returns once consuming
    await worker.stop()    # graceful drain
    worker.run()           # blocking; SIGTERM / SIGINT drain and exit
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from infinitic_py.backlog import BacklogGauges
from infinitic_py.batching import BatchLimits, as_batch_limits
from infinitic_py.credentials import BrokerCredentials
from infinitic_py.errors import ConfigError, ForcedShutdown, ServiceDefinitionError
from infinitic_py.gc_tuning import tune_gc_for_worker
from infinitic_py.health import HealthServer
from infinitic_py.observability import Metrics
from infinitic_py.retry import RetryPolicy
from infinitic_py.service import ServiceDefinition, define_service
from infinitic_py.topics import WORKER_SUBSCRIPTION, check_namespace
from infinitic_py.transport import create_transport, redact_url
from infinitic_py.transport.base import WORKER_MAX_REDELIVERIES, ConsumerSettings, Transport
from infinitic_py.transport.urls import check_url, is_memory
from infinitic_py.wire import Dialect
from infinitic_py.wire.dialects import make_dialect
from infinitic_py.worker.connect import connect_with_backoff
from infinitic_py.worker.executor import ServiceExecutor
from infinitic_py.worker.loop_watch import LoopWatch
from infinitic_py.worker.relay import Relay
from infinitic_py.worker.settings import ExecutorSettings

if TYPE_CHECKING:
    from infinitic_py.config import WorkerConfig

log = structlog.get_logger("infinitic_py.worker")


class Worker:
    """Consumes the topics of the services added to it and executes their tasks.

    Keyword-only options: ``tenant``, ``namespace``, ``name`` (defaults to the host name),
    ``consumer`` (``ConsumerSettings``; by default with the config file's ``max_redeliveries``,
    10), ``max_buffered_messages`` and ``max_buffered_bytes`` (per service: the worker stops
    pulling at either), ``max_hung_handlers`` (per service: sync
    handlers past their timeout whose threads are replaced; beyond, not ready),
    ``connect_timeout`` (seconds a start keeps trying to reach the broker), ``shutdown_grace``
    (seconds), ``http_port`` (``/metrics``, ``/healthz``, ``/readyz``; ``None``
    disables it), ``transport_options`` (passed to the transport, e.g. Pulsar auth/TLS),
    ``admin_url`` (start-up checks, and the backlog gauges every ``backlog_interval`` seconds;
    0 disables them: infinitic_py/backlog.py).
    ``gc_gen0_threshold`` (``None`` leaves the process's GC alone; else ``run()`` applies the
    worker GC tuning of ``gc_tuning`` before it starts; ``from_config`` sets it from
    ``worker.gc_gen0_threshold`` and applies it at once, its services imported).
    """

    def __init__(
        self,
        url: str,
        *,
        tenant: str = "public",
        namespace: str = "default",
        name: str | None = None,
        consumer: ConsumerSettings | None = None,
        max_buffered_messages: int = 10_000,
        max_buffered_bytes: int = 256 * 1024 * 1024,
        max_hung_handlers: int | None = None,
        connect_timeout: float = 120.0,
        shutdown_grace: float = 30.0,
        http_host: str = "0.0.0.0",
        http_port: int | None = None,
        metrics: Metrics | None = None,
        transport_options: Mapping[str, Any] | None = None,
        admin_url: str | None = None,
        backlog_interval: float = 15.0,
        gc_gen0_threshold: int | None = None,
    ) -> None:
        self.url = check_url(url)
        self.tenant, self.namespace = check_namespace(tenant, namespace)
        self.name = name or socket.gethostname()
        self.consumer_settings = consumer or ConsumerSettings(
            max_redeliveries=WORKER_MAX_REDELIVERIES)  # as the config file's default
        self.max_buffered_messages = max_buffered_messages
        self.max_buffered_bytes = max_buffered_bytes
        self.max_hung_handlers = max_hung_handlers
        if http_port is not None and (isinstance(http_port, bool) or not isinstance(
                http_port, int) or not 0 <= http_port <= 65535):  # it failed at start, unnamed
            raise ValueError(f"http_port must be a port from 0 to 65535 (or None), got "
                             f"{http_port!r}")
        for what, seconds in (("connect_timeout", connect_timeout),
                              ("shutdown_grace", shutdown_grace)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (
                    0 <= seconds < float("inf")):
                raise ValueError(f"{what} must be a finite number of seconds >= 0, got "
                                 f"{seconds!r}")
        self.connect_timeout = connect_timeout
        self.shutdown_grace = shutdown_grace
        self.http_host = http_host
        self.http_port = http_port
        self.metrics = metrics or Metrics()
        self._transport_options = dict(transport_options or {})
        self.admin_url = admin_url
        self._credentials = BrokerCredentials(self.url, admin_url,
                                              self._transport_options.get("auth_plugin"),
                                              self._transport_options.get("auth_params"))
        self.backlog_interval = backlog_interval
        self._backlog: BacklogGauges | None = None
        self._loop_watch = LoopWatch()  # names an async handler blocking the event loop
        self.gc_gen0_threshold = gc_gen0_threshold
        self._gc_tuned = False
        # What each service runs with, decided once at add_service: (definition, settings).
        self._services: list[tuple[ServiceDefinition, ExecutorSettings, Dialect[Any]]] = []
        self._relays: list[Relay] = []
        self._transport: Transport | None = None
        self._executors: list[ServiceExecutor] = []
        self._health: HealthServer | None = None
        self._started = False
        self._connecting = False
        self._draining = False

    # ------------------------------------------------------------------ configuration

    def add_service(
        self,
        instance: Any,
        *,
        name: str | None = None,
        concurrency: int = 10,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        batch: Mapping[str, BatchLimits | tuple[int, float]] | None = None,
        wire: str | Dialect[Any] = "native",
        tenant: str | None = None,
        namespace: str | None = None,
        event_handler: bool = False,
    ) -> Worker:
        """Register a service instance. ``batch`` overrides the decorators' limits per batched
        method: ``{"send": BatchLimits(max_messages=100, max_seconds=0.5)}``.
        ``wire``: ``"native"`` (infinitic-py's envelopes), ``"infinitic"`` (serve Infinitic 0.18
        JVM workflows and clients on Infinitic's topics; ``event_handler=True`` also plays
        Infinitic's task-event and task-retry handlers, so no JVM worker of this service is
        needed), or a ``Dialect``. ``tenant`` / ``namespace`` override the worker's for this
        service (e.g. Infinitic's). Signatures are checked here (once: raises
        ``ServiceDefinitionError``)."""
        if self._started:
            raise RuntimeError("add_service() must be called before start()")
        if isinstance(instance, type | str):
            shown = instance.__name__ if isinstance(instance, type) else instance
            raise ServiceDefinitionError(
                f"add_service() takes an instance of the service class: pass {shown}(), "
                f"not {instance!r}")
        limits = {method: as_batch_limits(method, value) for method, value in (batch or {}).items()}
        definition = define_service(instance, name=name, batch_limits=limits)
        if any(d.name == definition.name for d, *_ in self._services):
            raise ServiceDefinitionError(f"a service is registered twice: {definition.name}")
        tenant, namespace = check_namespace(tenant or self.tenant, namespace or self.namespace)
        settings = ExecutorSettings(
            tenant=tenant, namespace=namespace, concurrency=concurrency, retry=retry, timeout=timeout,
            max_buffered_messages=self.max_buffered_messages,
            max_buffered_bytes=self.max_buffered_bytes, max_hung_handlers=self.max_hung_handlers,
            consumer=self.consumer_settings, worker_name=self.name)
        dialect = make_dialect(wire, settings.tenant, settings.namespace,
                               event_handler=event_handler)
        self._services.append((definition, settings, dialect))
        return self

    @classmethod
    def from_config(cls, config: str | os.PathLike[str] | WorkerConfig) -> Worker:
        """A worker built from a config file (or a loaded ``WorkerConfig``): its services
        imported and added, and the process's GC tuned for a worker
        (``worker.gc_gen0_threshold``). Raises ConfigError."""
        from infinitic_py.config import WorkerConfig, load_config
        from infinitic_py.worker.from_config import build_worker

        loaded = config if isinstance(config, WorkerConfig) else load_config(config)
        worker: Worker = build_worker(cls, loaded)
        worker.tune_gc()  # after the imports: the services are frozen with the rest
        return worker

    def tune_gc(self) -> None:
        """Apply ``gc_gen0_threshold`` (once; nothing if it is None)."""
        if self.gc_gen0_threshold is not None and not self._gc_tuned:
            tune_gc_for_worker(self.gc_gen0_threshold)
            self._gc_tuned = True

    # ------------------------------------------------------------------ lifecycle

    @property
    def executors(self) -> list[ServiceExecutor]:
        return list(self._executors)

    @property
    def http_server(self) -> HealthServer | None:
        return self._health

    def ready(self) -> tuple[bool, str]:
        if self._connecting:
            return False, "connecting to the broker"
        if self._draining:
            return False, "draining: stopping, no new work taken"
        if not self._started or self._transport is None:
            return False, "not started"
        if not self._transport.is_connected():
            return False, "broker not connected" + self._credentials.expired_note()
        idle = [e.service for e in self._executors if not e.consuming]
        idle += [f"{r.service} (relay)" for r in self._relays if not r.consuming]
        if idle:
            return False, f"not consuming: {', '.join(idle)}"
        problems = [p for p in (e.health_problem() for e in self._executors) if p]
        if problems:
            return False, "; ".join(problems)
        return True, "ok"

    async def start(self) -> None:
        """Connect, subscribe every service and start consuming. Returns once consuming."""
        if self._started:
            return
        if not self._services:
            raise ConfigError("no service registered: call add_service() before start()")
        names = [d.name for d, *_ in self._services]
        self._connecting = True
        try:
            # Served from the start (/healthz 200, /readyz 503 while connecting); and so a
            # port in use fails before any consuming (ops, issue 16).
            if self.http_port is not None:
                self._health = HealthServer(
                    self.metrics, host=self.http_host, port=self.http_port, ready=self.ready
                )
                await self._health.start()
            await connect_with_backoff(
                self._connect, url=self.url,
                timeout=self.connect_timeout, log=log, credentials=self._credentials.problem,
                refusal=self._credentials.refusal, authenticated=self._credentials.configured)
        except BaseException:
            await self._close_all(grace=0.0)
            raise
        finally:
            self._connecting = False
        self._started = True
        self._loop_watch.start()
        if self.admin_url:
            await self._check_broker_limits()
            if self.backlog_interval > 0:
                self._backlog = BacklogGauges.start(
                    self._credentials.admin(timeout=5.0),
                    {e.service: e.topics for e in self._executors}, WORKER_SUBSCRIPTION,
                    self.metrics.registry, interval=self.backlog_interval)
        log.info(
            "worker.started",
            worker=self.name,
            services=names,
            url=redact_url(self.url),
            http_port=self._health.port if self._health else None,
        )

    async def _create_topics(self) -> None:
        """Create the topics a dialect needs where the broker does not (Infinitic namespaces
        have auto topic creation off), over the admin API."""
        wanted = {t: n for d, _, dialect in self._services
                  for t, n in dialect.topics(d.name).items()}
        if not wanted or is_memory(self.url):
            return
        if not self.admin_url:
            log.warning("worker.topics_not_created", topics=sorted(wanted),
                        reason="no admin_url: they must exist already")
            return
        admin = self._credentials.admin(timeout=10.0)
        for topic, partitions in wanted.items():
            await asyncio.to_thread(admin.ensure_topic, topic, partitions)

    async def _connect(self) -> None:
        """One attempt to connect: a transport, every service subscribed. A failure leaves
        nothing open (the next attempt starts afresh)."""
        self._transport = create_transport(self.url, **self._transport_options)
        try:
            await self._create_topics()
            for definition, settings, dialect in self._services:
                executor = ServiceExecutor(
                    definition, self._transport, settings, metrics=self.metrics, dialect=dialect
                )
                await executor.start()
                self._executors.append(executor)
                relayed = [s for s in dialect.subscriptions(definition.name)
                           if s.role != "execute"]
                if relayed:
                    relay = Relay(definition.name, relayed, self._transport, dialect,
                                  settings.consumer, self.name)
                    await relay.start()
                    self._relays.append(relay)
        except BaseException:
            await self._close_services(grace=0.0)
            raise

    async def _check_broker_limits(self) -> None:
        """Warn (never fail) when this worker can reach maxUnackedMessagesPerConsumer: the broker
        would silently stop delivering to it. Read through the admin API, bounded in time; each
        service against the policy of its own namespace (``services[].namespace`` may differ
        from the worker's)."""
        from infinitic_py.admin import PulsarAdminError
        from infinitic_py.limits import LimitScope, check_slots_against_limit, check_unacked_limit

        admin = self._credentials.admin(timeout=5.0)
        spaces = sorted({(e.settings.tenant, e.settings.namespace) for e in self._executors})
        try:
            broker_limit, *namespace_limits = await asyncio.wait_for(asyncio.gather(
                asyncio.to_thread(admin.broker_max_unacked_per_consumer),
                *(asyncio.to_thread(admin.namespace_max_unacked_per_consumer, tenant, namespace)
                  for tenant, namespace in spaces),
            ), 10.0)
        except (PulsarAdminError, TimeoutError, OSError) as exc:
            log.warning("worker.limits_unknown", admin_url=self.admin_url, error=str(exc))
            return
        namespace_limit = dict(zip(spaces, namespace_limits, strict=True))
        rq = self.consumer_settings.receiver_queue_size
        for executor in self._executors:
            max_messages = max((m.batch.limits.max_messages
                                for m in executor.definition.methods.values() if m.batch),
                               default=1)
            plan = (rq, executor.settings.concurrency, max_messages, self.max_buffered_messages)
            space = (executor.settings.tenant, executor.settings.namespace)
            scope = LimitScope(broker_limit=broker_limit, namespace_limit=namespace_limit[space],
                               tenant=space[0], namespace=space[1], service=executor.service)
            findings = [*check_slots_against_limit(*plan, **scope),
                        *check_unacked_limit(*plan, **scope)]
            for finding in findings:
                if finding.level != "ok":
                    log.warning("worker.unacked_limit", service=executor.service,
                                level=finding.level, message=finding.message,
                                fix=list(finding.suggestions))

    async def stop(self, grace: float | None = None) -> None:
        """Graceful drain of every service (``grace`` defaults to ``shutdown_grace``)."""
        if not self._started:
            return
        self._started = False
        self._draining = True
        try:
            await self._close_all(self.shutdown_grace if grace is None else grace)
        finally:
            self._draining = False
        log.info("worker.stopped", worker=self.name)

    async def _close_all(self, grace: float) -> None:
        self._loop_watch.stop()
        if self._backlog is not None:
            await self._backlog.stop()
            self._backlog = None
        await self._close_services(grace)
        if self._health is not None:
            await self._health.stop()
            self._health = None

    async def _close_services(self, grace: float) -> None:
        await asyncio.gather(*(e.stop(grace) for e in self._executors), return_exceptions=True)
        self._executors.clear()
        await asyncio.gather(*(r.stop() for r in self._relays), return_exceptions=True)
        self._relays.clear()
        if self._transport is not None:
            try:
                await asyncio.wait_for(self._transport.close(), 10.0)
            except TimeoutError:
                log.warning("worker.transport_close_timeout")
            self._transport = None

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run_until_signalled(self) -> None:
        """Start, wait for SIGTERM / SIGINT, drain, return."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        force = asyncio.Event()
        received: list[str] = []

        def on_signal(sig: signal.Signals) -> None:
            received.append(sig.name)
            if len(received) > 1:  # ops (issue 16): a second signal exits at once
                log.warning("worker.forced_exit", signal=sig.name,
                            note="second signal: nacking held messages, not waiting for handlers")
                force.set()
            stop.set()

        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        try:
            # A signal while still connecting ends the start (nothing to drain yet).
            starting = asyncio.ensure_future(self.start())
            signalled = asyncio.ensure_future(stop.wait())
            await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
                signalled.cancel()
                log.info("worker.signal", signal=received[0], note="stopped while connecting")
                return
            starting.result()  # a failed start raises here
            await signalled
            log.info("worker.signal", signal=received[0], grace=self.shutdown_grace)
            await self._stop_unless_forced(force)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def _stop_unless_forced(self, force: asyncio.Event) -> None:
        """The graceful drain, cut short when ``force`` is set: every executor then nacks what it
        holds at once, and ``ForcedShutdown`` is raised once the (now quick) stop returns."""
        stopping = asyncio.ensure_future(self.stop())
        forced = asyncio.ensure_future(force.wait())
        await asyncio.wait({stopping, forced}, return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        if stopping.done():
            stopping.result()
            return
        held = sum(executor.abort() for executor in self._executors)
        try:
            await asyncio.wait_for(asyncio.shield(stopping), 10.0)
        except TimeoutError:
            stopping.cancel()
        raise ForcedShutdown(
            f"forced exit on a second signal: {held} held message(s) nacked (they are redelivered)")

    def run(self) -> None:
        """Blocking: tune the GC (``gc_gen0_threshold``), run until SIGTERM / SIGINT, then drain
        within the grace period."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # none: the usual case
            pass
        else:  # it failed deep in asyncio, and took the caller's loop setting with it
            raise RuntimeError("Worker.run() blocks and runs its own event loop, and this thread "
                               "already runs one: in async code use `await worker.start()` ... "
                               "`await worker.stop()` (or `async with worker:`)")
        self.tune_gc()
        run_bounded(self.run_until_signalled(), LEFTOVER_GRACE)


# How long tasks still pending once the worker has stopped (an async handler that swallows its
# cancellation) get to end after being cancelled, before the process leaves them behind.
LEFTOVER_GRACE = 1.0
_ABANDONED: list[asyncio.Task[Any]] = []


def run_bounded(main: Coroutine[Any, Any, None], grace: float) -> None:
    """``asyncio.run(main)``, except for the tasks left when ``main`` ends: ``asyncio.run``
    cancels them and waits for them without limit, so one async handler that swallows
    ``CancelledError`` kept the process from ever exiting after SIGTERM. Here they get ``grace``
    seconds after their cancellation; any still pending is logged and abandoned."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    finally:
        try:
            left = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in left:
                t.cancel()
            if left:
                _, pending = loop.run_until_complete(asyncio.wait(left, timeout=grace))
                if pending:
                    log.warning("worker.tasks_abandoned", count=len(pending),
                                tasks=sorted({_task_name(t) for t in pending})[:5],
                                note="still running after their cancellation (a handler that "
                                     "swallows CancelledError?): the process exits anyway")
                    for t in pending:  # nor "Task was destroyed but it is pending!" at exit
                        t._log_destroy_pending = False  # type: ignore[attr-defined]
                    _ABANDONED.extend(pending)  # never finalized (closing their coroutines
                    # would run the swallowing handler's code again, at interpreter exit)
            loop.run_until_complete(asyncio.wait(
                [loop.create_task(loop.shutdown_asyncgens())], timeout=grace))
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _task_name(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or task.get_name()
