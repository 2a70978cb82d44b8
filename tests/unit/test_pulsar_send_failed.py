"""PulsarProducer.send_many: a failure part-way names the messages the broker confirmed."""

from __future__ import annotations

from typing import Any

import _pulsar
import pytest

from infinitic_py.transport.base import OutgoingMessage, SendFailed
from infinitic_py.transport.pulsar_producer import PulsarProducer


class FakeNative:
    """Confirms every message except the indexes in ``fail`` (callbacks run synchronously)."""

    def __init__(self, fail: set[int], raise_at: int | None = None) -> None:
        self.fail = fail
        self.raise_at = raise_at
        self.count = 0

    def send_async(self, message: Any, callback: Any) -> None:
        index = self.count
        if index == self.raise_at:
            raise RuntimeError("producer queue is closed")
        self.count += 1
        callback(_pulsar.Result.Timeout if index in self.fail else _pulsar.Result.Ok, None)


class Wrapper:
    def __init__(self, native: Any) -> None:
        self._producer = native


async def test_failed_callbacks_are_named() -> None:
    producer = PulsarProducer(Wrapper(FakeNative({5, 7, 12})), "t", 4)
    with pytest.raises(SendFailed) as err:
        await producer.send_many([OutgoingMessage(b"x")] * 20)
    # Windows of 4: the failing window is [4, 8): 4 and 6 were confirmed; the later windows
    # were never sent.
    assert err.value.sent == (0, 1, 2, 3, 4, 6)


async def test_a_synchronous_error_confirms_only_earlier_windows() -> None:
    producer = PulsarProducer(Wrapper(FakeNative(set(), raise_at=9)), "t", 4)
    with pytest.raises(SendFailed) as err:
        await producer.send_many([OutgoingMessage(b"x")] * 20)
    assert err.value.sent == tuple(range(8))


class ThreadedNative:
    """Confirms from two client threads at once, in any order (as a client's I/O threads do),
    failing the indexes in ``fail``."""

    def __init__(self, fail: set[int]) -> None:
        self.fail = fail
        self.calls: list[tuple[int, Any]] = []

    def send_async(self, message: Any, callback: Any) -> None:
        self.calls.append((len(self.calls), callback))

    def confirm_all(self) -> None:
        import threading

        def run(calls: list[tuple[int, Any]]) -> None:
            for index, callback in calls:
                callback(_pulsar.Result.Timeout if index in self.fail else _pulsar.Result.Ok, None)

        threads = [threading.Thread(target=run, args=(self.calls[i::2],)) for i in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


@pytest.mark.parametrize("fail", [set(), {3}, {0, 999}])
async def test_callbacks_from_client_threads_complete_once(fail: set[int]) -> None:
    import asyncio

    native = ThreadedNative(fail)
    producer = PulsarProducer(Wrapper(native), "t", 1000)
    sending = asyncio.ensure_future(producer.send_many([OutgoingMessage(b"x")] * 1000))
    await asyncio.sleep(0)  # one step: send_many hands the whole window over, then waits
    assert len(native.calls) == 1000
    await asyncio.to_thread(native.confirm_all)
    if not fail:
        await sending
        return
    with pytest.raises(SendFailed) as err:
        await sending
    assert err.value.sent == tuple(i for i in range(1000) if i not in fail)


class AnswersWith(FakeNative):
    """Fails every message with ``result``."""

    def __init__(self, result: Any) -> None:
        super().__init__(set())
        self.result = result

    def send_async(self, message: Any, callback: Any) -> None:
        callback(self.result, None)


@pytest.mark.parametrize(("result", "refused"), [
    (_pulsar.Result.Timeout, False), (_pulsar.Result.NotConnected, False),
    (_pulsar.Result.ServiceUnitNotReady, False), (_pulsar.Result.ConnectError, False),
    (_pulsar.Result.TopicNotFound, True), (_pulsar.Result.AuthorizationError, True),
    (_pulsar.Result.MessageTooBig, True), (_pulsar.Result.TopicTerminated, True),
])
async def test_a_failure_says_whether_the_broker_refused_or_may_take_it_later(
    result: Any, refused: bool,
) -> None:
    """A timeout while the broker is away is no refusal of the topic: the worker then nacks
    the unit (it runs again) instead of dead-lettering the tasks that reply there."""
    producer = PulsarProducer(Wrapper(AnswersWith(result)), "t", 4)
    with pytest.raises(SendFailed) as err:
        await producer.send_many([OutgoingMessage(b"x")] * 2)
    assert err.value.refused is refused


def test_the_asyncio_clients_exceptions_are_classified_by_their_result() -> None:
    import pulsar.asyncio

    from infinitic_py.transport.pulsar_producer import is_refusal

    assert is_refusal(pulsar.asyncio.PulsarException(_pulsar.Result.TopicNotFound))
    assert not is_refusal(pulsar.asyncio.PulsarException(_pulsar.Result.Timeout))
    assert is_refusal(_pulsar.TopicNotFound("x")) and not is_refusal(_pulsar.Timeout("x"))
