"""PulsarConsumer's receive thread against a stand-in native consumer: what must hold when the
native client does not do its part (a close it fails to signal to a blocked receive)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import _pulsar
import pytest

from infinitic_py.transport.base import ConsumerClosed
from infinitic_py.transport.pulsar import PulsarConsumer


class _DeafNative:
    """A native consumer that is always dry and whose ``receive`` a close never interrupts: the
    no-timeout ``receive()`` blocks until the test ends, ``receive(ms)`` waits ``ms`` and raises
    ``Timeout`` (what pulsar-client does)."""

    def __init__(self) -> None:
        self.released = threading.Event()  # set by the test's teardown only
        self.receives = 0
        self.closes: list[int] = []  # the threads that called close()

    def close(self) -> None:  # the blocking close; it does not reach the pending receive
        self.closes.append(threading.get_ident())

    def batch_receive(self) -> list[Any]:
        return []

    def receive(self, timeout_ms: int | None = None) -> Any:
        self.receives += 1
        if timeout_ms is None:
            self.released.wait()
            raise _pulsar.AlreadyClosed("released")
        if self.released.wait(timeout_ms / 1000):
            raise _pulsar.AlreadyClosed("released")
        raise _pulsar.Timeout("dry")


class _AsyncConsumer:
    """``pulsar.asyncio.Consumer`` stand-in. Its ``close`` must not be used: it gives the native
    client a Python callback, which a client thread releases after the close has returned (an
    abort when the process is exiting by then)."""

    def __init__(self, native: _DeafNative) -> None:
        self._consumer = native

    async def close(self) -> None:
        raise AssertionError("pulsar.asyncio's close() used: it hands a client thread a callback")


@pytest.fixture
def deaf() -> Any:
    native = _DeafNative()
    yield native
    native.released.set()


async def _until(predicate: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_close_frees_the_pump_thread_even_when_the_native_close_is_not_signalled(
    deaf: _DeafNative,
) -> None:
    consumer = PulsarConsumer(_AsyncConsumer(deaf), "t")
    pending = asyncio.ensure_future(consumer.receive())
    await _until(lambda: deaf.receives >= 1, 5)  # the thread waits in the native receive
    await asyncio.wait_for(consumer.close(), 10)
    with pytest.raises(ConsumerClosed):
        await asyncio.wait_for(pending, 1)
    assert len(deaf.closes) == 1 and deaf.closes[0] != threading.get_ident()  # blocking, off-loop
    assert consumer._thread is not None
    assert not consumer._thread.is_alive(), "the pump thread is stuck in a native receive"


async def test_release_ends_a_pending_receive(deaf: _DeafNative) -> None:
    # The transport's last step: whatever the pump thread does, nobody waits on a released one.
    consumer = PulsarConsumer(_AsyncConsumer(deaf), "t")
    pending = asyncio.ensure_future(consumer.receive())
    await _until(lambda: deaf.receives >= 1, 5)
    consumer._release()
    with pytest.raises(ConsumerClosed):
        await asyncio.wait_for(pending, 1)


class _ScriptedNative:
    """Hands out the chunks of ``script`` in turn (an exception is raised; a ``threading.Event``
    holds the next step back until it is set), then stays dry."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.stop = threading.Event()

    def batch_receive(self) -> list[Any]:
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, threading.Event):
                assert step.wait(10), "the test never released the next step"
                step = self.script.pop(0)
            if isinstance(step, BaseException):
                raise step
            return [_FakeNativeMessage(d) for d in step]
        return []

    def receive(self, timeout_ms: int) -> Any:
        self.stop.wait(timeout_ms / 1000)
        raise _pulsar.Timeout("dry")

    def close(self) -> None:
        self.stop.set()


class _FakeNativeMessage:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def data(self) -> bytes:
        return self._data


async def test_a_failure_is_forgotten_once_messages_flow_again() -> None:
    # Chunk 3 is held back until the test has seen the blip: a receive that takes message 1
    # after the pump thread failed may already ask it to try again, and chunk 3 then clears the
    # failure before the test could look (seen under load).
    gate = threading.Event()
    native = _ScriptedNative([[b"1", b"2"], _pulsar.ConnectError("blip"), gate, [b"3"]])
    consumer = PulsarConsumer(_AsyncConsumer(native), "t", chunk=2, ahead=10)  # type: ignore[arg-type]
    try:
        assert (await consumer.receive()).data == b"1"
        await _until(lambda: consumer._failure is not None, 5)  # the blip, behind message 2
        gate.set()
        assert (await consumer.receive()).data == b"2"  # asks the thread to try again
        await _until(lambda: len(consumer._ready) == 1, 5)
        assert (await consumer.receive()).data == b"3"
        # The topic is dry now: the blip is over, so a receive waits instead of raising it.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(consumer.receive(), 0.3)
    finally:
        await consumer.close()


def test_an_unanswered_close_does_not_hold_the_process_exit() -> None:
    """A native close that never returns (a broker that does not answer), given up by its caller:
    asyncio.run still returns (it waits for the default executor's threads, so the close must
    not run there)."""
    from infinitic_py.transport.pulsar import _close_natively

    released = threading.Event()

    class _Stuck:
        def close(self) -> None:
            released.wait()

    async def give_up() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(_close_natively(_Stuck()), 0.1)

    runner = threading.Thread(target=asyncio.run, args=(give_up(),), daemon=True)
    runner.start()
    runner.join(timeout=10)
    try:
        assert not runner.is_alive(), "asyncio.run waited for the abandoned close"
    finally:
        released.set()
        runner.join(timeout=10)


def test_batching_type_is_checked() -> None:
    from infinitic_py.transport.pulsar import PulsarTransport

    with pytest.raises(ValueError, match="batching_type"):
        PulsarTransport("pulsar://127.0.0.1:1", batching_type="by_key")
