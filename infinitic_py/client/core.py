"""Client SDK: dispatch tasks (one, or many in one round trip) and await their results.

    async with AsyncClient("pulsar://127.0.0.1:6650") as client:
        email = client.service(EmailService, meta={"batchKey": "tenant-42"})
        d = await email.send(EmailRequest(...))          # Deferred
        ok = await d.result(timeout=30)
        ds = await email.send.many([r1, r2, Call(r3, delay=2.0, task_id="order-17")])

``Client`` is the same surface for plain scripts and threads (it runs an ``AsyncClient`` on a
private event loop thread). Arguments are checked against the method's types before anything is
sent: a wrong type raises ``TypeError`` at the call site, never a poison message on the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import msgspec
import structlog

from infinitic_py import tracing
from infinitic_py.client.codecs import ClientCodec, make_codec
from infinitic_py.client.failures import caller_failure, dispatch_failed, response_topic_taken
from infinitic_py.client.stubs import (
    Call,
    Deferred,
    ServiceStub,
    check_batch_key,
    check_meta,
    check_tag_count,
    check_tags,
    check_task_id,
    delay_of,
    wrong_loop,
)
from infinitic_py.client_admin import AUTO, ClientAdmin, resolve_admin_url
from infinitic_py.credentials import authorization_problem
from infinitic_py.errors import ClientClosed
from infinitic_py.keys import KeyRotation, check_key_rotation, check_key_spread, spread_for
from infinitic_py.priority import DEFAULT_PRIORITY, Band, band_of, band_service, check_priority
from infinitic_py.producers import ProducerCache
from infinitic_py.service import MethodDefinition, describe_class, service_name
from infinitic_py.topics import check_client_name, check_namespace, check_service_name
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import (
    Consumer,
    ConsumerClosed,
    ConsumerSettings,
    OutgoingMessage,
    Producer,
    SendFailed,
    SubscriptionType,
    Transport,
    TransportError,
)
from infinitic_py.transport.probe import unreachable_reason
from infinitic_py.transport.urls import check_url, is_memory
from infinitic_py.wire import native as wire
from infinitic_py.wire.bulk import MAX_BULK_BYTES, bulk_message
from infinitic_py.wire.native import Reply

T = TypeVar("T")

log = structlog.get_logger("infinitic_py.client")

DEFAULT_MAX_PRODUCERS = 64  # open producers (one per service dispatched to) per client

class AsyncClient:
    """Dispatches tasks and receives their results on a per-client response topic."""

    def __init__(
        self,
        url: str,
        *,
        tenant: str = "public",
        namespace: str = "default",
        name: str | None = None,
        results: bool = True,
        subscription_type: SubscriptionType = SubscriptionType.SHARED,
        transport: Transport | None = None,
        transport_options: Mapping[str, Any] | None = None,
        max_producers: int = DEFAULT_MAX_PRODUCERS,
        max_bulk_bytes: int = MAX_BULK_BYTES,
        wire: str = "native",
        parameter_types: Mapping[str, Sequence[str]] | None = None,
        key_spread: int | Mapping[str, int] = 1,
        key_rotation: int | Mapping[str, int] = 0,
        admin_url: str | None = AUTO,
    ) -> None:
        """``admin_url``: the broker's admin REST API, used to delete the response topic at
        close and to say once when no worker consumes a service dispatched to (see
        ``client_admin``); ``"auto"``: Pulsar's default admin port on the broker's host;
        ``None``: neither (the response topic then stays on the broker)."""
        self.url = check_url(url)
        self.tenant, self.namespace = check_namespace(tenant, namespace)
        self.name = check_client_name(name or f"client-{uuid.uuid4().hex[:12]}", tenant,
                                      namespace)
        self.results = results
        self.subscription_type = subscription_type
        # Sub-keys per batch key (an int, or {service name: int}): see infinitic_py/keys.py.
        self.key_spread = check_key_spread(key_spread)
        # Runs of N tasks per batch key, each run under its own routing key (0: off; an int, or
        # {service name: int}; N = the method's max_messages): see infinitic_py/keys.py.
        self.key_rotation = check_key_rotation(key_rotation)
        self._rotation = KeyRotation()
        self._transport_options = dict(transport_options or {})
        self._transport = transport
        self._own_transport = transport is None
        for what, value in (("max_producers", max_producers), ("max_bulk_bytes", max_bulk_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be an int >= 1, got {value!r}")
        self.max_producers = max_producers
        self.max_bulk_bytes = max_bulk_bytes  # an atomic many() must fit one broker message
        # One producer per service; a client may dispatch to any number of services (by name):
        # at most ``max_producers`` of them once idle, the least recently used closed first.
        self._producers = ProducerCache(self._create_producer, max_producers)
        self._closing: set[asyncio.Task[None]] = set()
        self._subscribing: asyncio.Future[None] | None = None  # the response topic's subscribe
        self._responses: Consumer | None = None
        self._response_task: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it first ran in
        # wire="infinitic": Infinitic 0.18 requests to JVM services (``parameter_types``:
        # {"Service.method": JVM class names}; the admin API creates ``response:<name>``, as
        # Infinitic namespaces have auto topic creation off)
        self._codec: ClientCodec = make_codec(wire, tenant, namespace, parameter_types)
        if self._codec.name != "native" and self.key_rotation:
            raise ValueError(f"key_rotation is a native-wire feature (wire={wire!r})")
        self.response_topic = self._codec.response_topic(self.name)
        self.replies_received = 0  # replies that reached this client's response topic
        self.replies_unmatched = 0  # ... for a task no Deferred here waits for (late / dropped)
        self._class_methods: dict[type[Any], dict[str, MethodDefinition]] = {}
        # ops (issue 16): response topic deletion at close, one "no worker" warning per service.
        resolved_admin = None if is_memory(url) else resolve_admin_url(url, admin_url)
        self._admin = (ClientAdmin(resolved_admin, self._transport_options)
                       if resolved_admin else None)
        self.admin_url = resolved_admin
        self._admin_tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> AsyncClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect (done lazily by the first dispatch otherwise)."""
        self._check_open()
        self._check_loop()
        if self._transport is None:
            self._transport = create_transport(self.url, **self._transport_options)

    def service(
        self,
        service: type[Any] | str,
        *,
        meta: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        results: bool | None = None,
        name: str | None = None,
    ) -> ServiceStub:
        """A stub for a service class (arguments checked against its types) or a service name
        (no checks: the worker validates). ``results=False``: don't ask for replies.
        ``name`` targets a class registered under another name (``add_service(..., name=)``)."""
        methods = None
        if not isinstance(service, str):
            methods = self._class_methods.get(service)
            if methods is None:
                methods = describe_class(service)
                self._class_methods[service] = methods
        return ServiceStub(
            self, check_service_name(name or service_name(service)), methods, meta, tags,
            self.results if results is None else results,
        )

    async def close(self) -> None:
        """Close producers and the response consumer; pending results raise ClientClosed."""
        if self._closed:
            return
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop():
            if loop.is_running():  # its own loop runs in another thread: close it there
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.close(), loop))
                return
            # Its loop is stopped (a previous asyncio.run()): its receive task ran there, and
            # the futures of the results it awaited went with it if it is closed; the
            # broker-side resources are closed here.
            self._response_task = None
            if loop.is_closed():
                self._waiting.clear()
        self._closed = True  # (a subscribe still in flight closes its own consumer)
        if self._responses is not None:
            with contextlib.suppress(TransportError):
                await self._responses.close()
        if self._response_task is not None:
            await asyncio.gather(self._response_task, return_exceptions=True)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ClientClosed(f"client {self.name} closed"))
                future.exception()  # mark retrieved: nobody may be awaiting this Deferred
        self._waiting.clear()
        await self._producers.close()
        if self._transport is not None and self._own_transport:
            await self._transport.close()
        # ops (issue 16): no response topic is left behind (see client_admin).
        for pending in list(self._admin_tasks):
            pending.cancel()
        if self._admin is not None and self._responses is not None:
            await self._admin.delete_topic(self.response_topic, self.name)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed(f"client {self.name} is closed")

    def _check_loop(self) -> None:
        """A client lives in the event loop it first ran in (its receive task, its futures):
        used from another one (a second ``asyncio.run()``), the results would never come."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(wrong_loop(self.name))

    # ------------------------------------------------------------------ dispatch

    async def _dispatch(
        self,
        stub: ServiceStub,
        method: str,
        definition: MethodDefinition | None,
        calls: Sequence[Call],
        atomic: bool = False,
    ) -> list[Deferred[Any]]:
        self._check_open()
        self._check_loop()
        now = wire.now()
        want_results = stub.results
        reply_to = self.response_topic if want_results else None
        task_ids: list[str] = []
        priorities: list[int] = []
        out: list[OutgoingMessage] = []
        seen: set[str] = set()
        spread = spread_for(self.key_spread, stub.name)
        rotate = spread_for(self.key_rotation, stub.name, 0)
        if rotate and spread > 1:
            raise ValueError(f"{stub.name}: key_spread and key_rotation both set; they are two "
                             "ways to spread a key over workers, pick one")
        for index, call in enumerate(calls):
            try:
                task_id, priority, message = self._build(
                    stub, method, definition, call, reply_to, now, spread,
                    task_ids[0] if atomic and task_ids else None)
            except (TypeError, ValueError) as exc:
                where = f"item {index}: " if len(calls) > 1 else ""
                raise type(exc)(f"{where}{exc}") from None
            if task_id in seen:
                raise ValueError(f"item {index}: task_id {task_id!r} appears twice")
            if want_results and task_id in self._waiting:
                raise ValueError(
                    f"item {index}: task_id {task_id!r} is already dispatched by this "
                    "client and awaiting its result (await that Deferred)"
                )
            seen.add(task_id)
            task_ids.append(task_id)
            priorities.append(priority)
            if rotate and message.partition_key is not None:
                message = msgspec.structs.replace(message, partition_key=self._rotation.key_for(
                    stub.name, message.partition_key, rotate))
            if tracing.ENABLED:  # ops (issue 16): the caller's trace context travels with it
                message = tracing.injected(message)
            out.append(message)
        bands: dict[Band, list[int]] = {}  # each priority band is its own topic
        for index, priority in enumerate(priorities):
            bands.setdefault(band_of(priority), []).append(index)
        if atomic and self._codec.name != "native":
            raise ValueError(f"atomic many() is a native-wire feature (wire={self._codec.name})")
        if atomic:  # one message: persisted whole or not at all (wire/bulk.py)
            if len(bands) > 1:
                raise ValueError("an atomic many() is one message on one topic: give all its "
                                 "tasks priorities of one band (0-3, 4-6 or 7-9)")
            out = [bulk_message(out, self.max_bulk_bytes)]
            if tracing.ENABLED:  # its tasks inherit the bulk's trace (wire/bulk.py)
                out = [tracing.injected(out[0])]
        # Register the futures before the first await: a concurrent dispatch of the same
        # task id is refused above, never silently takes over a waiting future.
        deferreds: list[Deferred[Any]] = []
        decoder = definition.output_decoder if definition is not None else None
        for task_id in task_ids:
            future: asyncio.Future[Reply] | None = None
            if want_results:
                future = asyncio.get_running_loop().create_future()
                self._waiting[task_id] = future
            deferred: Deferred[Any] = Deferred(task_id, future, decoder, self)
            if future is not None:
                weakref.finalize(deferred, self._forget, task_id, future)
            deferreds.append(deferred)
        sent: set[int] = set()  # indexes the broker confirmed (a plain many())
        try:
            await self.start()
            if want_results:
                await self._ensure_responses()
            for band in sorted(bands, reverse=True):  # the highest band first
                key = band_service(stub.name, band)
                indexes = bands[band]
                with self._producers.using(key):
                    producer = await self._producers.get(key)
                    if atomic:
                        await producer.send_many(out)
                        continue
                    try:
                        await producer.send_many(
                            out if len(bands) == 1 else [out[i] for i in indexes])
                    except SendFailed as exc:
                        sent.update(indexes[j] for j in exc.sent)
                        raise
                sent.update(indexes)
        except BaseException as exc:
            for index, deferred in enumerate(deferreds):
                if deferred._future is not None and index not in sent:
                    self._forget(deferred.task_id, deferred._future)
            if not isinstance(exc, TransportError):
                raise
            failure = caller_failure(exc, self._closed, out) or exc
            if failure is exc and not sent:  # a wrong address or refused credentials: named as
                # such, not as pulsar-client's "Timeout"
                reason = await unreachable_reason(self.url)
                if reason is None:
                    reason = authorization_problem(
                        str(exc), self._transport_options.get("auth_plugin"),
                        self._transport_options.get("auth_params"))
                if reason is None and self._admin is not None:
                    reason = await self._admin.credentials_problem()
                failure = TransportError(reason) if reason else exc
            raise dispatch_failed(failure, task_ids, sent, deferreds, atomic) from exc
        return deferreds

    def _forget(self, task_id: str, future: asyncio.Future[wire.Reply]) -> None:
        """A Deferred nobody holds any more: stop waiting for its result (if the id is not
        awaited again by a newer Deferred). A finalizer runs in whichever thread dropped the
        Deferred (a sync ``Client``'s caller): the removal then goes to the client's loop."""
        loop = future.get_loop()
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if not on_loop:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing waits any more
                loop.call_soon_threadsafe(self._forget, task_id, future)
            return
        if self._waiting.get(task_id) is future:
            del self._waiting[task_id]

    def _build(
        self,
        stub: ServiceStub,
        method: str,
        definition: MethodDefinition | None,
        call: Call,
        reply_to: str | None,
        now: float,
        spread: int = 1,
        spread_by: str | None = None,
    ) -> tuple[str, int, OutgoingMessage]:
        """(task id, priority, message): the codec encodes."""
        if definition is not None:
            positional = definition.bind_args(call.args, dict(call.kwargs))
        else:
            if call.kwargs:
                raise TypeError(
                    f"{stub.name}.{method}(): keyword arguments need the service class "
                    "(client.service(ServiceClass)) to know the parameter order"
                )
            positional = tuple(call.args)
        meta = {**stub.meta, **(check_meta(call.meta) or {})}
        check_batch_key(meta)
        tags = (*stub.tags, *(check_tags(call.tags) or ()))
        check_tag_count(tags)
        check_task_id(call.task_id)
        priority = DEFAULT_PRIORITY if call.priority is None else check_priority(call.priority)
        task_id, message = self._codec.build(
            stub.name, method, definition, call, positional, meta,
            tags, reply_to, self.name, delay_of(call), now,
            priority, spread=spread, spread_by=spread_by)
        return task_id, priority, message

    async def _create_producer(self, service: str) -> Producer:
        assert self._transport is not None
        topic = self._codec.task_topic(service)
        await self._create_topics(self._codec.service_topics(service))
        # A topic keeps nothing without a subscription: create the workers' one first so
        # tasks dispatched before any worker started are not dropped.
        try:
            await self._transport.ensure_subscription(
                topic, self._codec.worker_subscription(), self.subscription_type
            )
        except TransportError as exc:
            # E.g. workers are connected with another subscription type (key_shared) or
            # Key_Shared policy: then the subscription exists, which is all that is needed here.
            log.debug("client.ensure_subscription_failed", topic=topic, error=str(exc))
        producer = await self._transport.create_producer(
            topic, schema=self._codec.producer_schema(topic))
        if self._admin is not None and self._codec.name == "native":
            # ops (issue 16): say once when no worker consumes it (infinitic-py's subscription)
            check = asyncio.create_task(self._admin.check_workers(topic, service, self.name))
            self._admin_tasks.add(check)
            check.add_done_callback(self._admin_tasks.discard)
        return producer

    async def _ensure_responses(self) -> None:
        """Subscribe the response topic once. The subscribe runs as its own task, shielded: a
        caller cancelled meanwhile must not orphan the exclusive consumer the broker is creating
        (every later dispatch then failed with ConsumerBusy); the next caller awaits it."""
        if self._responses is not None:
            return
        if self._subscribing is None or (self._subscribing.done()
                                         and self._subscribing.exception() is not None):
            self._subscribing = asyncio.ensure_future(self._subscribe_responses())
            self._subscribing.add_done_callback(_retrieved)
        await asyncio.shield(self._subscribing)

    async def _subscribe_responses(self) -> None:
        assert self._transport is not None
        await self._create_topics(self._codec.topics_to_create(self.name))
        settings = ConsumerSettings(subscription_type=SubscriptionType.EXCLUSIVE,
                                    receiver_queue_size=1000, consumer_name=self.name,
                                    writer_schemas=self._codec.writer_schemas)
        try:
            consumer = await self._transport.subscribe(self.response_topic, self.name, settings)
        except TransportError as exc:
            raise response_topic_taken(exc, self.name, self.response_topic) from exc
        if self._closed:  # close() ran meanwhile (it does not wait for a subscribe)
            with contextlib.suppress(TransportError):
                await consumer.close()
            raise ClientClosed(f"client {self.name} closed")
        self._responses = consumer
        self._response_task = asyncio.create_task(
            self._receive_responses(consumer), name=f"infinitic-responses-{self.name}")

    async def _create_topics(self, topics: Mapping[str, int]) -> None:
        """Create ``topics`` (partitions; 0: non-partitioned) over the admin API where missing:
        Infinitic namespaces have auto topic creation off."""
        if not topics or is_memory(self.url):
            return
        if self._admin is None:
            log.debug("client.topics_not_created", topics=sorted(topics))
            return
        await self._admin.ensure_topics(topics)  # with the client's auth token

    async def _receive_responses(self, consumer: Consumer) -> None:
        while True:
            try:
                msg = await consumer.receive()
            except ConsumerClosed:
                return
            except TransportError as exc:
                log.warning("client.receive_failed", client=self.name, error=str(exc))
                await asyncio.sleep(0.5)  # reconnect backoff
                continue
            try:
                reply = self._codec.decode_reply(msg)
            except Exception as exc:  # unreadable: logged, acked (nothing can wait for it)
                log.error("client.bad_reply", client=self.name, error=str(exc))
            else:
                if reply is None:  # a message of no interest (e.g. a workflow answer)
                    with contextlib.suppress(TransportError):
                        await consumer.acknowledge([msg])
                    continue
                self.replies_received += 1
                future = self._waiting.pop(reply.task_id, None)
                if future is not None and not future.done():
                    future.set_result(reply)
                else:
                    self.replies_unmatched += 1
            with contextlib.suppress(TransportError):
                await consumer.acknowledge([msg])


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # a failed subscribe nobody awaits any more: no "never retrieved"
