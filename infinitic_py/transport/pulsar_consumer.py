"""``PulsarConsumer``: messages reach the event loop in chunks from a pump thread running the
native sync ``batch_receive()`` (see the class), and ``close_natively``, the blocking close every
native object of this transport goes through (see its docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import _pulsar
import pulsar.asyncio as pulsar_asyncio

from infinitic_py.transport.base import (
    Consumer,
    ConsumerClosed,
    ReceivedMessage,
    TransportError,
)
from infinitic_py.transport.pulsar_schemas import WriterSchemas

_CLOSED_ERRORS = (_pulsar.AlreadyClosed, _pulsar.ConsumerNotInitialized)
_CONSUMER_GONE = ConsumerClosed("the native consumer is closed")  # pump -> loop sentinel
# Receive chunks: the pump thread's batch_receive returns once it holds this many messages
# (a quarter of receiver_queue_size), these many bytes, or after this wait.
CHUNK_SHARE = 4
CHUNK_MAX_BYTES = 10 * 1024 * 1024
CHUNK_WAIT_MS = 1
# A dry pump thread waits for the next message at most this long per native call (then checks
# whether its consumer was closed): an idle consumer wakes twice a second, and a close that the
# native client fails to signal still frees the thread within this time.
_IDLE_WAIT_MS = 500
_PUMP_JOIN_TIMEOUT = 5.0
_Timeout = _pulsar.Timeout



async def close_natively(native: Any) -> None:
    """Closes a native client, producer or consumer with its blocking ``close()`` in another
    thread, not ``pulsar.asyncio``'s ``close()``: that one hands the native client a Python
    callback, which a client thread calls and then releases, taking the GIL, *after* the awaiting
    coroutine has resumed. A process that exits right after its last close (a worker after its
    drain) was then finalizing, and the client thread aborted it ("terminate called without an
    active exception"; 4 worker exits in 40 under load). The blocking close waits on a C++
    promise: no Python object reaches a client thread.

    The close runs in a daemon thread of its own, not the loop's default executor: a caller that
    stops waiting (a close bounded by a timeout while the broker does not answer) leaves it
    behind, and ``asyncio.run`` would otherwise wait for it without limit at exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            native.close()
        except BaseException as exc:  # handed to the awaiting coroutine
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=run, name="pulsar-close", daemon=True).start()
    await done

class _PulsarMessage(ReceivedMessage, gc=False):
    """A received message whose properties and redelivery count are read from the native message
    on first access: the executor reads neither on its hot path, and the two native calls cost
    more than building the object. Built as ``_PulsarMessage(data, None, -1, topic, native)``."""

    def _read_properties(self) -> Mapping[str, str]:
        properties: Mapping[str, str] = self.handle.properties()
        return properties

    def _read_redelivery_count(self) -> int:
        return int(self.handle.redelivery_count())

    def _read_partition_key(self) -> str | None:
        key: str = self.handle.partition_key()
        return key or None

    def _read_publish_time_ms(self) -> int | None:
        published = int(self.handle.publish_timestamp())
        return published or None


class PulsarConsumer(Consumer):
    """A consumer whose messages reach the event loop in chunks.

    One thread per consumer (started by the first ``receive``) moves messages from the native
    consumer to a deque on the event loop: ``batch_receive()`` (up to ``chunk`` messages, waiting
    at most ``wait_ms`` for a chunk to fill) while messages flow, and a blocking ``receive(ms)``
    once the topic runs dry, so a lone message is handed over at once and an idle consumer wakes
    only every ``_IDLE_WAIT_MS``.

    The thread fetches ahead: it starts the next ``batch_receive`` (which runs without the GIL)
    as soon as at most ``ahead`` messages (normally one chunk) are outstanding (handed to the loop
    and not yet taken by a ``receive``), so the next chunk is ready by the time the loop has routed
    the current one, and it touches the GIL once per chunk (to wrap the messages). It waits only
    when more is outstanding, for ``receive`` to take some. So the client holds at most
    ``native receiver queue + ahead + chunk`` messages: ``subscribe`` sizes the three to stay
    within ``receiver_queue_size`` (2 for a size of 1). As in pulsar-client itself, the native
    queue may overshoot by one producer batch: the broker dispatches whole batch entries.
    ``receive`` pops the deque without a thread hop or a native call (``receive_many`` takes a run
    of it at once); one ``call_soon_threadsafe`` per chunk remains.

    Nothing is lost: a message in the deque is unacked, and closing the consumer (which ends a
    pending ``receive`` with ``ConsumerClosed``) hands it back to the broker. A cancelled
    ``receive`` strands nothing either: its message stays in the deque.
    """

    def __init__(
        self, consumer: pulsar_asyncio.Consumer, topic: str, *, chunk: int = 1,
        ahead: int | None = None, writers: WriterSchemas | None = None,
    ) -> None:
        self._writers = writers  # resolves each message's writer schema, in the pump thread
        self._native: Any = consumer._consumer  # all calls go to the native consumer
        self._topic = topic
        self._closed = False
        self._chunk = max(1, chunk)
        self._ahead = self._chunk if ahead is None else max(0, ahead)
        self._ready: deque[ReceivedMessage] = deque()
        self._failure: TransportError | None = None  # raised once by the next receive
        self._waiters: list[asyncio.Future[None]] = []
        # Outstanding messages = _sent - _taken. Each counter has one writer: _sent the thread
        # (handed to the loop, counted before the hand-over), _taken the loop (taken out of the
        # deque by a receive, or dropped at close).
        self._sent = 0
        self._taken = 0
        self._want = threading.Event()  # loop -> thread: something was taken, or a receive waits
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def receive(self) -> ReceivedMessage:
        return (await self.receive_many(1))[0]

    async def receive_many(self, max_messages: int) -> list[ReceivedMessage]:
        ready = self._ready
        while True:
            if self._closed:
                raise ConsumerClosed(f"consumer of {self._topic} is closed")
            if ready:
                if len(ready) <= max_messages:
                    msgs = list(ready)
                    ready.clear()
                else:
                    popleft = ready.popleft
                    msgs = [popleft() for _ in range(max(1, max_messages))]
                self._taken += len(msgs)
                if self._sent - self._taken <= self._ahead and not self._want.is_set():
                    self._want.set()  # the thread may be waiting for room
                return msgs
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure
            self._ask()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _ask(self) -> None:
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._pump, args=(self._native, self._loop),
                name=f"pulsar-receive-{self._topic.rsplit('/', 1)[-1]}", daemon=True,
            )
            self._thread.start()
        if not self._want.is_set():
            self._want.set()

    def _deliver(self, items: list[ReceivedMessage], failure: BaseException | None) -> None:
        """On the event loop: a chunk (or a failure) from the pump thread."""
        if failure is _CONSUMER_GONE:
            self._closed = True  # closed underneath us (the client was closed)
        elif failure is not None and not self._closed:
            assert isinstance(failure, TransportError)
            self._failure = failure
        elif items:
            if self._closed:  # after close they go back to the broker, unacked
                self._taken += len(items)
            else:
                self._failure = None  # receiving again: an earlier failure is over
                self._ready.extend(items)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _pump(self, native: Any, loop: asyncio.AbstractEventLoop) -> None:
        """The receive thread: fetches a chunk whenever at most ``ahead`` messages are
        outstanding, hands it to the loop; after a failure, waits for the next receive before
        trying again."""
        topic = self._topic
        ahead = self._ahead
        want = self._want
        while True:
            while not self._closed and self._sent - self._taken > ahead:
                want.wait()
                want.clear()
            if self._closed:
                return
            failure: BaseException | None = None
            items: list[ReceivedMessage] = []
            try:
                msgs = native.batch_receive()
                if not msgs:  # dry: block for the next message, hand it over at once
                    msgs = [native.receive(_IDLE_WAIT_MS)]
            except _Timeout:
                continue  # still dry: check for a close, then wait again
            except Exception as exc:
                failure = (
                    _CONSUMER_GONE if self._closed or isinstance(exc, _CLOSED_ERRORS)
                    else TransportError(f"receive from {topic}: {exc}")
                )
                want.clear()  # a failure is retried only when a receive asks again
            else:
                if self._writers is None:
                    items = [_PulsarMessage(m.data(), None, -1, topic, m) for m in msgs]
                else:
                    of = self._writers.of
                    items = [_PulsarMessage(m.data(), None, -1, topic, m, of(m, topic))
                             for m in msgs]
                self._sent += len(items)
            try:
                loop.call_soon_threadsafe(self._deliver, items, failure)
            except RuntimeError:  # the loop is closed: nobody will receive any more
                return
            if failure is _CONSUMER_GONE:
                return
            if failure is not None:
                want.wait()
                want.clear()

    async def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        # The native sync ack: the client groups individual acks (sent every 100 ms; ack receipts,
        # which would make it wait for the broker, are not enabled), so it returns at once, and a
        # failure raises. No Python callback per message: acknowledge_async's callback cost more
        # than the ack itself (comparing the pybind11 result enum alone took a third of it).
        try:
            ack = self._native.acknowledge  # None after the transport closed: an error below
            for message in messages:
                ack(message.handle)
        except Exception as exc:
            raise TransportError(f"ack on {self._topic}: {exc}") from exc

    def negative_acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        try:
            for message in messages:
                self._native.negative_acknowledge(message.handle)
        except Exception as exc:
            raise TransportError(f"nack on {self._topic}: {exc}") from exc

    def _end_receives(self) -> None:
        """Marks the consumer closed: a pending ``receive`` raises ``ConsumerClosed`` now."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def close(self) -> None:
        if self._closed:
            return
        self._end_receives()
        try:
            await close_natively(self._native)  # ends a native receive the pump thread waits in
        except Exception as exc:
            raise TransportError(f"closing consumer of {self._topic}: {exc}") from exc
        finally:
            self._want.set()
        await self._join_pump()

    async def _join_pump(self) -> None:
        """Wait (bounded) for the pump thread to leave native code: the native objects must not
        be destroyed under it."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._want.set()
        await asyncio.to_thread(thread.join, _PUMP_JOIN_TIMEOUT)

    def is_connected(self) -> bool:
        return not self._closed and self._native is not None and bool(self._native.is_connected())

    def _release(self) -> None:
        self._end_receives()
        self._native = None

