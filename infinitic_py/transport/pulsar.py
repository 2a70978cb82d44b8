"""Pulsar transport over pulsar-client's native asyncio support.

``pulsar.asyncio`` creates the producers and consumers; the hot operations (receive, ack many,
send many) call the native ``*_async`` methods directly with one future per *call*: a batch of
100 acks or sends completes one future instead of 100, and a callback that fires on the event
loop's own thread (a message already waiting in the receiver queue) completes its future without
a cross-thread wake-up.

Facts this module relies on (checked by tests/integration against the real broker):
- a pending ``receive_async`` completes with an error once the consumer is closed;
- Shared / Key_Shared subscriptions honour ``deliver_after`` and nack redelivery;
- batch-index acks need ``batch_index_ack_enabled=True`` here and
  ``acknowledgmentAtBatchIndexLevelEnabled=true`` on the broker.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import _pulsar
import pulsar
import pulsar.asyncio as pulsar_asyncio

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

_CONSUMER_TYPES = {
    SubscriptionType.SHARED: pulsar.ConsumerType.Shared,
    SubscriptionType.KEY_SHARED: pulsar.ConsumerType.KeyShared,
    SubscriptionType.EXCLUSIVE: pulsar.ConsumerType.Exclusive,
    SubscriptionType.FAILOVER: pulsar.ConsumerType.Failover,
}
_COMPRESSION = {
    "none": pulsar.CompressionType.NONE,
    "lz4": pulsar.CompressionType.LZ4,
    "zlib": pulsar.CompressionType.ZLib,
    "zstd": pulsar.CompressionType.ZSTD,
    "snappy": pulsar.CompressionType.SNAPPY,
}
_OK = _pulsar.Result.Ok
_CLOSED_RESULTS = {_pulsar.Result.AlreadyClosed, _pulsar.Result.ConsumerNotInitialized}


class _Countdown:
    """Completes one asyncio future after ``n`` native callbacks (from any thread)."""

    __slots__ = ("_error", "_future", "_lock", "_loop", "_loop_thread", "_remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int, loop_thread: int) -> None:
        self._loop = loop
        self._loop_thread = loop_thread
        self._future: asyncio.Future[None] = loop.create_future()
        self._remaining = n
        self._error: Any = None
        self._lock = threading.Lock()
        if n == 0:
            self._future.set_result(None)

    @property
    def future(self) -> asyncio.Future[None]:
        return self._future

    def __call__(self, result: Any, *_: Any) -> None:
        with self._lock:
            if result != _OK and self._error is None:
                self._error = result
            self._remaining -= 1
            last = self._remaining == 0
        if last:
            if threading.get_ident() == self._loop_thread:
                self._complete()
            else:
                self._loop.call_soon_threadsafe(self._complete)

    def _complete(self) -> None:
        if self._future.done():
            return
        if self._error is None:
            self._future.set_result(None)
        else:
            self._future.set_exception(TransportError(f"pulsar: {self._error}"))


class PulsarProducer(Producer):
    def __init__(self, producer: pulsar_asyncio.Producer, topic: str, max_pending: int) -> None:
        self._producer = producer
        self._native: Any = producer._producer
        self._topic = topic
        self._max_pending = max_pending

    @property
    def topic(self) -> str:
        return self._topic

    async def send(self, message: OutgoingMessage) -> None:
        await self.send_many((message,))

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None:
        loop = asyncio.get_running_loop()
        me = threading.get_ident()
        # Windows of at most max_pending keep the native queue from filling (which would block
        # the event loop in send_async); within a window everything is in flight at once.
        for start in range(0, len(messages), self._max_pending):
            window = messages[start : start + self._max_pending]
            countdown = _Countdown(loop, len(window), me)
            try:
                for message in window:
                    self._native.send_async(_build(message), countdown)
            except Exception as exc:  # pulsar raises its own exception types synchronously
                raise TransportError(f"cannot publish to {self._topic}: {exc}") from exc
            await countdown.future

    async def close(self) -> None:
        try:
            await self._producer.close()
        except Exception as exc:
            raise TransportError(f"closing producer of {self._topic}: {exc}") from exc

    def is_connected(self) -> bool:
        return self._native is not None and bool(self._native.is_connected())

    def _release(self) -> None:
        self._native = None
        self._producer = None


def _build(message: OutgoingMessage) -> Any:
    builder = _pulsar.MessageBuilder()
    builder.content(message.data)
    for key, value in message.properties.items():
        builder.property(key, value)
    if message.partition_key is not None:
        builder.partition_key(message.partition_key)
    if message.deliver_after is not None and message.deliver_after > 0:
        builder.deliver_after(timedelta(seconds=message.deliver_after))
    return builder.build()


class PulsarConsumer(Consumer):
    def __init__(self, consumer: pulsar_asyncio.Consumer, topic: str) -> None:
        self._consumer = consumer
        self._native: Any = consumer._consumer
        self._topic = topic
        self._closed = False

    async def receive(self) -> ReceivedMessage:
        if self._closed:
            raise ConsumerClosed(f"consumer of {self._topic} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        me = threading.get_ident()

        def on_message(result: Any, msg: Any) -> None:
            if threading.get_ident() == me:
                _settle(future, result, msg)
            else:
                loop.call_soon_threadsafe(_settle, future, result, msg)

        self._native.receive_async(on_message)
        try:
            msg = await future
        except _ReceiveFailed as exc:
            if self._closed or exc.result in _CLOSED_RESULTS:
                raise ConsumerClosed(f"consumer of {self._topic} is closed") from None
            raise TransportError(f"receive from {self._topic}: {exc.result}") from None
        return ReceivedMessage(
            msg.data(), msg.properties(), msg.redelivery_count(), self._topic, msg
        )

    async def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        countdown = _Countdown(asyncio.get_running_loop(), len(messages), threading.get_ident())
        try:
            for message in messages:
                self._native.acknowledge_async(message.handle, countdown)
        except Exception as exc:
            raise TransportError(f"ack on {self._topic}: {exc}") from exc
        await countdown.future

    def negative_acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        try:
            for message in messages:
                self._native.negative_acknowledge(message.handle)
        except Exception as exc:
            raise TransportError(f"nack on {self._topic}: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._consumer.close()
        except Exception as exc:
            raise TransportError(f"closing consumer of {self._topic}: {exc}") from exc

    def is_connected(self) -> bool:
        return not self._closed and bool(self._native.is_connected())

    def _release(self) -> None:
        self._closed = True
        self._native = None
        self._consumer = None


class _ReceiveFailed(Exception):
    def __init__(self, result: Any) -> None:
        super().__init__(str(result))
        self.result = result


def _settle(future: asyncio.Future[Any], result: Any, msg: Any) -> None:
    if future.done():
        return
    if result == _OK:
        future.set_result(msg)
    else:
        future.set_exception(_ReceiveFailed(result))


class PulsarTransport(Transport):
    """``pulsar://host:6650`` or ``pulsar+ssl://host:6651``.

    Options: ``auth_plugin`` + ``auth_params`` (any pulsar ``Authentication`` plugin),
    ``tls_trust_certs_file``, ``tls_allow_insecure_connection``, ``tls_validate_hostname``,
    ``operation_timeout_seconds``, ``io_threads``, and producer tuning ``batching_max_messages``,
    ``batching_max_publish_delay_ms``, ``send_timeout_seconds``, ``compression``,
    ``max_pending_messages``; ``log_level`` of pulsar-client's native console logger (``warn``),
    or ``logger``: a Python logger instead (structured, but pulsar-client calls it from its C++
    threads, which can abort a process at exit).
    """

    def __init__(
        self,
        url: str,
        *,
        auth_plugin: str | None = None,
        auth_params: str | None = None,
        tls_trust_certs_file: str | None = None,
        tls_allow_insecure_connection: bool = False,
        tls_validate_hostname: bool = False,
        operation_timeout_seconds: int = 30,
        io_threads: int = 1,
        batching_max_messages: int = 1000,
        batching_max_publish_delay_ms: int = 10,
        send_timeout_seconds: float = 30.0,
        compression: str = "none",
        max_pending_messages: int = 5000,
        log_level: str = "warn",
        logger: logging.Logger | None = None,
    ) -> None:
        self.url = url
        if logger is None:
            # pulsar-client's own native logger by default: a Python logger is called from the
            # client's C++ threads, and around process exit that aborted 5 of 20 short-lived
            # scripts ("terminate called without an active exception"); 0 of 40 with this one.
            levels = {"debug": pulsar.LoggerLevel.Debug, "info": pulsar.LoggerLevel.Info,
                      "warn": pulsar.LoggerLevel.Warn, "warning": pulsar.LoggerLevel.Warn,
                      "error": pulsar.LoggerLevel.Error}
            if log_level.lower() not in levels:
                raise ValueError(f"log_level must be one of {sorted(levels)}, got {log_level!r}")
            native_logger: Any = pulsar.ConsoleLogger(levels[log_level.lower()])
        else:
            native_logger = logger
        client_args: dict[str, Any] = {
            "operation_timeout_seconds": operation_timeout_seconds,
            "io_threads": io_threads,
            "logger": native_logger,
            "tls_allow_insecure_connection": tls_allow_insecure_connection,
            "tls_validate_hostname": tls_validate_hostname,
        }
        if tls_trust_certs_file:
            client_args["tls_trust_certs_file_path"] = tls_trust_certs_file
        if auth_plugin:
            client_args["authentication"] = pulsar.Authentication(auth_plugin, auth_params or "")
        if compression not in _COMPRESSION:
            raise ValueError(f"compression must be one of {sorted(_COMPRESSION)}, got {compression!r}")
        try:
            self._client = pulsar_asyncio.Client(url, **client_args)
        except Exception as exc:
            raise TransportError(f"cannot create a Pulsar client for {url}: {exc}") from exc
        self._producer_args: dict[str, Any] = {
            "batching_enabled": True,
            "batching_max_messages": batching_max_messages,
            "batching_max_publish_delay_ms": batching_max_publish_delay_ms,
            "send_timeout_millis": int(send_timeout_seconds * 1000),
            "compression_type": _COMPRESSION[compression],
            "max_pending_messages": max_pending_messages,
            "block_if_queue_full": True,
        }
        self._max_pending = max_pending_messages
        self._consumers: list[PulsarConsumer] = []
        self._producers: list[PulsarProducer] = []
        self._closed = False

    async def create_producer(self, topic: str) -> Producer:
        try:
            native = await self._client.create_producer(topic, **self._producer_args)
        except Exception as exc:
            raise TransportError(f"cannot create a producer on {topic}: {exc}") from exc
        producer = PulsarProducer(native, topic, self._max_pending)
        self._producers.append(producer)
        return producer

    async def subscribe(
        self, topic: str, subscription: str, settings: ConsumerSettings
    ) -> Consumer:
        args: dict[str, Any] = {
            "consumer_type": _CONSUMER_TYPES[settings.subscription_type],
            "receiver_queue_size": settings.receiver_queue_size,
            "negative_ack_redelivery_delay_ms": max(1, int(settings.nack_redelivery_delay * 1000)),
            "initial_position": (
                pulsar.InitialPosition.Earliest
                if settings.initial_position_earliest
                else pulsar.InitialPosition.Latest
            ),
            "batch_index_ack_enabled": True,
        }
        if settings.consumer_name:
            args["consumer_name"] = settings.consumer_name
        if settings.max_redeliveries is not None and settings.subscription_type in (
            SubscriptionType.SHARED, SubscriptionType.KEY_SHARED
        ):
            args["dead_letter_policy"] = pulsar.ConsumerDeadLetterPolicy(
                max_redeliver_count=settings.max_redeliveries,
                dead_letter_topic=settings.dead_letter_topic,
            )
        try:
            native = await self._client.subscribe(topic, subscription, **args)
        except Exception as exc:
            raise TransportError(f"cannot subscribe to {topic} as {subscription}: {exc}") from exc
        consumer = PulsarConsumer(native, topic)
        self._consumers.append(consumer)
        return consumer

    async def ensure_subscription(
        self, topic: str, subscription: str, subscription_type: SubscriptionType
    ) -> None:
        consumer = await self.subscribe(
            topic, subscription, ConsumerSettings(subscription_type=subscription_type,
                                                  receiver_queue_size=1)
        )
        await consumer.close()
        self._consumers.remove(consumer)  # type: ignore[arg-type]

    def is_connected(self) -> bool:
        if self._closed:
            return False
        live: list[Callable[[], bool]] = [c.is_connected for c in self._consumers if not c._closed]
        if not live:
            live = [p.is_connected for p in self._producers]
        return all(check() for check in live) if live else True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._client.close()
        except Exception as exc:
            logging.getLogger("infinitic_py").debug("pulsar client close: %s", exc)
        # Destroy the native client, producers and consumers now, on this thread, while the
        # interpreter is fully alive: left to interpreter teardown, the C++ destructors can abort
        # the process ("terminate called without an active exception") after a clean drain.
        for consumer in self._consumers:
            consumer._release()
        for producer in self._producers:
            producer._release()
        self._consumers.clear()
        self._producers.clear()
        del self._client
        gc.collect()


__all__ = ["PulsarConsumer", "PulsarProducer", "PulsarTransport"]
