"""PulsarProducer.send_many: a failure part-way names the messages the broker confirmed."""

from __future__ import annotations

from typing import Any

import _pulsar
import pytest

from infinitic_py.transport.base import OutgoingMessage, SendFailed
from infinitic_py.transport.pulsar import PulsarProducer


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
    def __init__(self, native: FakeNative) -> None:
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
