"""``PulsarProducer``: sends over the native producer, many messages at once with one future per
*call* (``_Countdown``: the native ``send_async`` callbacks count down on a client thread that
keeps its Python thread state, see ``_keep_thread_state``), and ``is_refusal``, which of
pulsar-client's answers are final."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import _pulsar
import pulsar.asyncio as pulsar_asyncio

from infinitic_py.transport.base import (
    OutgoingMessage,
    Producer,
    SendFailed,
    TransportError,
)
from infinitic_py.transport.pulsar_consumer import close_natively

# pybind11 runs a Python callback on a client thread under a Python thread state it makes for
# that one call and deletes after it (the state's GIL-state counter goes 1 -> 0): a thread state
# and its frame stack (mmap'd) made and freed per message sent, half of the I/O thread's time.
# One PyGILState_Ensure that is never released, from inside a callback, keeps the counter above 0:
# the thread keeps its state for its life, and pybind11 then only takes and drops the GIL.
# Whether this thread state is kept is itself kept in it (a thread-local): a thread ident is
# reused by the next client's thread once a closed client's thread ends.
# (A closed client's I/O thread leaves its one state behind; it is freed with the interpreter.)
_gil_state_ensure = ctypes.pythonapi.PyGILState_Ensure
_this_thread_state = threading.local()


def _keep_thread_state() -> None:
    """Called on a client thread, holding the GIL, whose state is not kept yet (``kept`` is not
    set on ``_this_thread_state``): keep it (see above)."""
    _gil_state_ensure()
    _this_thread_state.kept = True


# Pulsar's answers that concern the topic or the message itself: asked again, the broker gives the
# same one (``TransportError.refused``). Anything else (Timeout, ConnectError, NotConnected,
# ServiceUnitNotReady, ...) may pass: the broker is away or busy.
_REFUSALS = frozenset({
    "TopicNotFound", "InvalidTopicName", "AuthorizationError", "NotAllowedError",
    "TopicTerminated", "IncompatibleSchema", "MessageTooBig",
    "ProducerBlockedQuotaExceededError", "ProducerBlockedQuotaExceededException",
})


def is_refusal(error: Any) -> bool:
    """Whether a pulsar-client result (``_pulsar.Result``) or exception (the sync client's, one
    class per result; ``pulsar.asyncio.PulsarException``, which carries its result) is a
    refusal."""
    if isinstance(error, pulsar_asyncio.PulsarException):
        error = error.error()
    name = error.name if isinstance(error, _pulsar.Result) else type(error).__name__
    return name in _REFUSALS


class _Countdown:
    """Completes one asyncio future after ``n`` native callbacks (from any thread).

    A callback is one Python frame, run by a client thread holding the GIL (two per task in
    the Infinitic dialect): it reads the result's ``value`` (0 is Ok; comparing pybind11 enums
    took ~1 µs a time) and counts itself with ``next()`` on an ``itertools.count``, atomic under
    the GIL, instead of a lock. A failure is recorded before its callback counts itself, so the
    last callback sees every failure."""

    __slots__ = ("_count", "_future", "_loop", "_loop_thread", "_n", "failures")

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int, loop_thread: int) -> None:
        self._loop = loop
        self._loop_thread = loop_thread
        self._future: asyncio.Future[None] = loop.create_future()
        self._n = n
        self._count = itertools.count(1)
        self.failures: list[tuple[int, Any]] = []  # (index, result) of each failed message
        if n == 0:
            self._future.set_result(None)

    @property
    def future(self) -> asyncio.Future[None]:
        return self._future

    @property
    def failed(self) -> list[int]:
        """The indexes whose callback reported an error (read after the future)."""
        return [index for index, _ in self.failures]

    def callback(self, index: int) -> Callable[..., None]:
        """The callback of the ``index``-th message."""
        failures = self.failures
        count = self._count
        n = self._n
        state = _this_thread_state

        def done(result: Any, *_: Any) -> None:
            if not getattr(state, "kept", False):
                _keep_thread_state()
            if result.value:  # not Ok
                failures.append((index, result))  # list.append is atomic
            if next(count) == n:
                self._last()
        return done

    def _last(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._complete()
            return
        # A closed loop (a send completing after its caller's loop ended): nobody awaits
        # the future, and raising here, in a client thread, would abort the process.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._complete)

    def _complete(self) -> None:
        if self._future.done():
            return
        if not self.failures:
            self._future.set_result(None)
        else:
            self._future.set_exception(TransportError(
                f"pulsar: {self.failures[0][1]}",
                refused=all(is_refusal(result) for _, result in self.failures)))


class PulsarProducer(Producer):
    def __init__(self, producer: pulsar_asyncio.Producer, topic: str, max_pending: int) -> None:
        self._native: Any = producer._producer  # all calls go to the native producer
        self._topic = topic
        self._max_pending = max_pending

    async def send(self, message: OutgoingMessage) -> None:
        await self.send_many((message,))

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None:
        loop = asyncio.get_running_loop()
        me = threading.get_ident()
        # Windows of at most max_pending keep the native queue from filling (which would block
        # the event loop in send_async); within a window everything is in flight at once.
        # A failure raises SendFailed with the indexes the broker confirmed (the earlier
        # windows, and the messages of the failing window whose callback said Ok).
        for start in range(0, len(messages), self._max_pending):
            window = messages[start : start + self._max_pending]
            countdown = _Countdown(loop, len(window), me)
            try:
                for i, message in enumerate(window):
                    self._native.send_async(_build(message), countdown.callback(i))
            except Exception as exc:  # pulsar raises its own exception types synchronously
                raise SendFailed(f"cannot publish to {self._topic}: {exc}",
                                 range(start), refused=is_refusal(exc)) from exc
            try:
                await countdown.future
            except TransportError as exc:
                failed = set(countdown.failed)
                raise SendFailed(str(exc), [*range(start), *(
                    start + i for i in range(len(window)) if i not in failed)],
                    refused=exc.refused) from exc

    async def close(self) -> None:
        try:
            await close_natively(self._native)
        except Exception as exc:
            raise TransportError(f"closing producer of {self._topic}: {exc}") from exc

    def is_connected(self) -> bool:
        return self._native is not None and bool(self._native.is_connected())

    def _release(self) -> None:
        self._native = None


def _build(message: OutgoingMessage) -> Any:
    if not message.properties and message.partition_key is None and not message.deliver_after:
        return _pulsar.MessageBuilder().content(message.data).build()  # the events, replies
    builder = _pulsar.MessageBuilder()
    builder.content(message.data)
    for key, value in message.properties.items():
        builder.property(key, value)
    if message.partition_key is not None:
        builder.partition_key(message.partition_key)
    if message.deliver_after is not None and message.deliver_after > 0:
        builder.deliver_after(timedelta(seconds=message.deliver_after))
    return builder.build()
