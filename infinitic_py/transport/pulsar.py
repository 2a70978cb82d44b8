"""Pulsar transport over pulsar-client's native API.

``pulsar.asyncio`` creates the producers and consumers; the hot operations bypass its one-future-
and-one-thread-hop-per-message wrappers:

- receive: one thread per consumer runs the sync ``batch_receive()`` and hands the loop a chunk of
  messages at a time (one ``call_soon_threadsafe`` per chunk); ``receive()`` pops a deque. See
  ``PulsarConsumer`` for the prefetch bound and why nothing can be lost or stranded;
- ack: the native sync ``acknowledge`` per message (the client groups acks and sends them every
  100 ms, so it returns at once; no Python callback per message);
- send many: ``send_async`` per message, one future per *call* (``PulsarProducer`` in
  ``pulsar_producer``).

``make bench`` measures each against raw pulsar-client loops (benchmarks/run.py).

Facts this module relies on (checked by tests/integration against the real broker):
- closing a consumer ends a native ``receive()`` / ``batch_receive()`` blocked in another thread
  with ``AlreadyClosed``; ``batch_receive()`` returns ``[]`` after the policy's timeout. Closing
  the *client* does not always end a pending ``receive()`` (2 times in 100 here: pulsar-client
  3.13's no-timeout receive is an async call whose callback a client close can miss), so the
  transport closes its consumers first, and the pump's idle wait is a bounded ``receive(ms)``;
- Shared / Key_Shared subscriptions honour ``deliver_after`` and nack redelivery;
- batch-index acks need ``batch_index_ack_enabled=True`` here and
  ``acknowledgmentAtBatchIndexLevelEnabled=true`` on the broker;
- a Key_Shared subscription routes a whole producer batch (one entry) by the key of the batch:
  with pulsar-client's default batching, a ``many()`` of mixed keys (or single dispatches sent
  within one batching delay) reached one consumer (4 workers, 20 keys: 4,000 / 0 / 0 / 0 tasks).
  Producers therefore batch by key (``BatchingType.KeyBased``: one batch per key, flushed
  together), which changes nothing for messages without a key: they share one batch, as before.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

import pulsar
import pulsar.asyncio as pulsar_asyncio
import structlog

from infinitic_py.tokens import token_source
from infinitic_py.transport.base import (
    Consumer,
    ConsumerSettings,
    Partitioner,
    Producer,
    SubscriptionType,
    Transport,
    TransportError,
)
from infinitic_py.transport.pulsar_consumer import (
    CHUNK_MAX_BYTES,
    CHUNK_SHARE,
    CHUNK_WAIT_MS,
    PulsarConsumer,
    close_natively,
)
from infinitic_py.transport.pulsar_producer import PulsarProducer, is_refusal
from infinitic_py.transport.pulsar_schemas import RawAvroSchema, WriterSchemas

_CONSUMER_TYPES = {
    SubscriptionType.SHARED: pulsar.ConsumerType.Shared,
    SubscriptionType.KEY_SHARED: pulsar.ConsumerType.KeyShared,
    SubscriptionType.EXCLUSIVE: pulsar.ConsumerType.Exclusive,
    SubscriptionType.FAILOVER: pulsar.ConsumerType.Failover,
}
# Key_Shared consumers allow out-of-order delivery: a key still goes to one consumer, but a
# key that moves (a worker joins or leaves) is not held back until its old owner acks (the
# broker's "draining hashes", on by default). Nothing here keeps a key's order anyway (a key's
# batches run side by side, retries come back later), and that hold is where Pulsar 4.x
# Key_Shared dispatch has stalled: apache/pulsar#23845, #24736, #26236 (in CI, a rolling
# restart left one key's 75 tasks undelivered for good, every consumer idle).
_OUT_OF_ORDER = pulsar.ConsumerKeySharedPolicy(allow_out_of_order_delivery=True)
_log = structlog.get_logger("infinitic_py.transport")
_COMPRESSION = {
    "none": pulsar.CompressionType.NONE,
    "lz4": pulsar.CompressionType.LZ4,
    "zlib": pulsar.CompressionType.ZLib,
    "zstd": pulsar.CompressionType.ZSTD,
    "snappy": pulsar.CompressionType.SNAPPY,
}
_BATCHING_TYPES = {
    "key_based": pulsar.BatchingType.KeyBased,
    "default": pulsar.BatchingType.Default,
}
# Each native close the transport waits for at most this long (a broker that does not answer
# would hold it for the client's operation timeout).
_NATIVE_CLOSE_TIMEOUT = 5.0


def _authentication(plugin: str, params: str | None) -> Any:
    """pulsar-client's authentication. A token plugin gets the token as ``tokens.token_source``
    reads it (the admin calls read it the same way): pulsar-client sends a ``file://`` token with
    the file's trailing newline, which the broker refuses (its requests then time out), and knows
    no ``{"token": ...}`` JSON form. A token file is read again at each (re)connection, so a
    rotated token is picked up (gone meanwhile: no token, the refused connection is retried)."""
    source = token_source(plugin, params)  # an unreadable token file: one clear error now
    if source is None:
        return pulsar.Authentication(plugin, params or "")
    if callable(source):
        read = source
        return pulsar.AuthenticationToken(lambda: read() or "")
    return pulsar.AuthenticationToken(source)


class PulsarTransport(Transport):
    """``pulsar://host:6650`` or ``pulsar+ssl://host:6651``.

    Options: ``auth_plugin`` + ``auth_params`` (any pulsar ``Authentication`` plugin),
    ``tls_trust_certs_file``, ``tls_allow_insecure_connection``, ``tls_validate_hostname``,
    ``operation_timeout_seconds``, ``io_threads``, and producer tuning ``batching_max_messages``,
    ``batching_max_publish_delay_ms``, ``send_timeout_seconds``, ``compression``,
    ``max_pending_messages``, ``batching_type`` (``key_based``, the default: each producer batch
    holds one partition key, so a Key_Shared subscription routes every key on its own; or
    ``default``: pulsar-client's mixed batches, fewer entries for many keys, Shared only); ``log_level`` of pulsar-client's native console logger (``warn``),
    or ``logger``: a Python logger instead (structured, but pulsar-client calls it from its C++
    threads, which can abort a process at exit), or ``log_file``: the native logger writes there
    (the CLI tools pass ``os.devnull``: their failures are one line of their own).
    ``connection_timeout_ms``: how long one TCP + Pulsar handshake may take (pulsar-client's 10 s).
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
        batching_type: str = "key_based",
        log_level: str = "warn",
        logger: logging.Logger | None = None,
        log_file: str | None = None,
        connection_timeout_ms: int = 10_000,
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
            level = levels[log_level.lower()]
            native_logger: Any = (pulsar.ConsoleLogger(level) if log_file is None
                                  else pulsar.FileLogger(level, log_file))
        else:
            native_logger = logger
        client_args: dict[str, Any] = {
            "operation_timeout_seconds": operation_timeout_seconds,
            "connection_timeout_ms": connection_timeout_ms,
            "io_threads": io_threads,
            "logger": native_logger,
            "tls_allow_insecure_connection": tls_allow_insecure_connection,
            "tls_validate_hostname": tls_validate_hostname,
        }
        if tls_trust_certs_file:
            client_args["tls_trust_certs_file_path"] = tls_trust_certs_file
        if auth_plugin:
            client_args["authentication"] = _authentication(auth_plugin, auth_params)
        if compression not in _COMPRESSION:
            raise ValueError(f"compression must be one of {sorted(_COMPRESSION)}, got {compression!r}")
        if batching_type not in _BATCHING_TYPES:
            raise ValueError(
                f"batching_type must be one of {sorted(_BATCHING_TYPES)}, got {batching_type!r}")
        try:
            self._client = pulsar_asyncio.Client(url, **client_args)
        except Exception as exc:
            raise TransportError(f"cannot create a Pulsar client for {url}: {exc}") from exc
        self._producer_args: dict[str, Any] = {
            "batching_enabled": True,
            "batching_max_messages": batching_max_messages,
            "batching_max_publish_delay_ms": batching_max_publish_delay_ms,
            "batching_type": _BATCHING_TYPES[batching_type],
            "send_timeout_millis": int(send_timeout_seconds * 1000),
            "compression_type": _COMPRESSION[compression],
            "max_pending_messages": max_pending_messages,
            "block_if_queue_full": True,
        }
        self._max_pending = max_pending_messages
        self._consumers: list[PulsarConsumer] = []
        self._producers: list[PulsarProducer] = []
        self._closed = False
        self._writers: WriterSchemas | None = None

    async def create_producer(self, topic: str, *, schema: str | None = None,
                              partitioner: Partitioner | None = None) -> Producer:
        return await self._create_producer(topic, schema, partitioner, batching=True)

    async def create_unbatched_producer(self, topic: str, *, schema: str | None = None,
                                        partitioner: Partitioner | None = None) -> Producer:
        return await self._create_producer(topic, schema, partitioner, batching=False)

    async def _create_producer(self, topic: str, schema: str | None,
                               partitioner: Partitioner | None, *, batching: bool) -> Producer:
        args = dict(self._producer_args)
        args["batching_enabled"] = batching
        if schema is not None:  # the dialect's pre-encoded bytes, under the given definition
            args["schema"] = RawAvroSchema(schema)
        if partitioner is not None:
            args["message_routing_mode"] = pulsar.PartitionsRoutingMode.CustomPartition
            args["message_router"] = lambda msg, n: partitioner(msg.partition_key(), n)
            args["batching_type"] = pulsar.BatchingType.KeyBased
        try:
            native = await self._client.create_producer(topic, **args)
        except Exception as exc:
            raise TransportError(f"cannot create a producer on {topic}: {exc}",
                                 refused=is_refusal(exc)) from exc
        producer = PulsarProducer(native, topic, self._max_pending)
        self._producers.append(producer)
        return producer

    async def subscribe(
        self, topic: str, subscription: str, settings: ConsumerSettings
    ) -> Consumer:
        return await self._open_consumer(topic, subscription, settings)

    async def _open_consumer(
        self, topic: str, subscription: str, settings: ConsumerSettings, *,
        join_strict: bool = True,
    ) -> PulsarConsumer:
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
        # The pump thread holds up to ahead + chunk messages beyond the native queue: split the
        # prefetch budget so that the three stay within receiver_queue_size (see PulsarConsumer;
        # a size below 3 gets a native queue of 1, one chunk of 1 and no fetching ahead).
        size = settings.receiver_queue_size
        chunk = max(1, size // CHUNK_SHARE)
        native_queue = max(1, size - 2 * chunk)
        ahead = max(0, size - native_queue - chunk)
        args["receiver_queue_size"] = native_queue
        args["batch_receive_policy"] = pulsar.ConsumerBatchReceivePolicy(
            chunk, CHUNK_MAX_BYTES, CHUNK_WAIT_MS
        )
        if settings.consumer_name:
            args["consumer_name"] = settings.consumer_name
        if settings.schema is not None:  # bytes still: for the broker's dead-letter producer
            args["schema"] = RawAvroSchema(settings.schema)
        if settings.max_redeliveries is not None and settings.subscription_type in (
            SubscriptionType.SHARED, SubscriptionType.KEY_SHARED
        ):
            args["dead_letter_policy"] = pulsar.ConsumerDeadLetterPolicy(
                max_redeliver_count=settings.max_redeliveries,
                dead_letter_topic=settings.dead_letter_topic,
                initial_subscription_name=settings.dead_letter_subscription,
            )
        try:
            if settings.subscription_type is SubscriptionType.KEY_SHARED:
                native = await self._subscribe_key_shared(topic, subscription, args,
                                                          join_strict=join_strict)
            else:
                native = await self._client.subscribe(topic, subscription, **args)
        except Exception as exc:
            raise TransportError(f"cannot subscribe to {topic} as {subscription}: {exc}") from exc
        writers = None
        if settings.writer_schemas:
            if self._writers is None:
                self._writers = WriterSchemas(self._client._client)
            writers = self._writers
        consumer = PulsarConsumer(native, topic, chunk=chunk, ahead=ahead, writers=writers)
        self._consumers.append(consumer)
        return consumer

    async def _subscribe_key_shared(self, topic: str, subscription: str,
                                    args: dict[str, Any], *, join_strict: bool) -> Any:
        """Subscribe out of order (see the module notes); join a subscription whose consumers
        keep strict order (an older infinitic-py fleet, mid rolling update) with its policy: the
        broker refuses a consumer whose Key_Shared policy differs (ConsumerBusy). Not
        ``join_strict``: the refusal is raised (a consumer opened only to create the
        subscription: refused, it exists)."""
        try:
            return await self._client.subscribe(
                topic, subscription, key_shared_policy=_OUT_OF_ORDER, **args)
        except Exception as refused:
            if not join_strict or "ConsumerBusy" not in str(refused):
                raise
            try:
                native = await self._client.subscribe(topic, subscription, **args)
            except Exception:
                raise refused from None
        _log.warning("consumer.key_shared_strict_order", topic=topic, subscription=subscription,
                     note="its other consumers keep strict key order (draining hashes): joined "
                          "with their policy, which the subscription keeps while any consumer "
                          "is connected; stop every worker of it at once to change it")
        return native

    async def ensure_subscription(
        self, topic: str, subscription: str, subscription_type: SubscriptionType
    ) -> None:
        # Not through ``subscribe`` (a subclass may wrap what it returns): this consumer is
        # opened only to create the subscription, then closed and forgotten. Refused by a
        # Key_Shared fleet of the other policy, it does not join it: the subscription exists.
        consumer = await self._open_consumer(
            topic, subscription, ConsumerSettings(subscription_type=subscription_type,
                                                  receiver_queue_size=1), join_strict=False
        )
        await consumer.close()
        self._consumers.remove(consumer)

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
        log = logging.getLogger("infinitic_py")
        try:
            # Each open consumer is closed on its own first: that ends a receive pending in its
            # pump thread reliably (a client close alone misses one now and then, see the module
            # notes). Every wait is bounded: a broker that does not answer delays the exit by
            # seconds, not by the client's operation timeout per object.
            results = await asyncio.gather(
                *(asyncio.wait_for(consumer.close(), _NATIVE_CLOSE_TIMEOUT)
                  for consumer in self._consumers if not consumer._closed),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    log.debug("pulsar consumer close: %r", result)
            try:
                await asyncio.wait_for(close_natively(self._client._client),
                                       _NATIVE_CLOSE_TIMEOUT)
            except Exception as exc:
                log.debug("pulsar client close: %r", exc)
            await asyncio.gather(*(consumer._join_pump() for consumer in self._consumers))
        finally:
            # Even when a caller's timeout cancels the close: drop the native client, producers
            # and consumers now, on this thread, while the interpreter is fully alive. Left to
            # interpreter teardown, the C++ destructors can abort the process ("terminate called
            # without an active exception") after a clean drain. A thread still in native code
            # (a close or receive) keeps its own reference to the object it uses.
            for consumer in self._consumers:
                consumer._release()
            for producer in self._producers:
                producer._release()
            self._consumers.clear()
            self._producers.clear()
            del self._client
            gc.collect()


_close_natively = close_natively  # the name tests use

__all__ = ["PulsarConsumer", "PulsarProducer", "PulsarTransport"]
