"""Relay: a handler-role subscription's messages become the dialect's relays, acked once the
relays are durable. Its receive loop outlives an unexpected exception (a bug of ours, or of a
library), as the executor's does: the run goes back to the broker and the loop keeps consuming."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from infinitic_py.transport.base import (
    ConsumerSettings,
    OutgoingMessage,
    ReceivedMessage,
    SubscriptionType,
    TransportError,
)
from infinitic_py.transport.memory import MemoryTransport, get_broker
from infinitic_py.wire import Publish, Subscription
from infinitic_py.wire.native import NativeDialect
from infinitic_py.worker.relay import Relay


class EchoRelay(NativeDialect):
    """Relays every ``events`` message to ``out`` as it is."""

    def relay(self, role: str, message: ReceivedMessage, worker: str) -> Sequence[Publish]:
        return (Publish("out", OutgoingMessage(message.data)),)


async def _until(predicate: Any, seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_relay_survives_an_unexpected_exception() -> None:
    name = f"relay-{uuid.uuid4().hex[:8]}"
    transport = MemoryTransport(f"memory://{name}")
    broker = get_broker(name)
    await transport.ensure_subscription("out", "test", SubscriptionType.SHARED)
    relay = Relay("Svc", [Subscription("events", "relay-sub", role="events")], transport,
                  EchoRelay(), ConsumerSettings(nack_redelivery_delay=0.05), "w1")
    await relay.start()
    publish = relay._producers.publish_each
    calls = 0

    async def fails_once(by_topic: Mapping[str, Sequence[OutgoingMessage]]) -> dict[str, TransportError]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return await publish(by_topic)

    relay._producers.publish_each = fails_once  # type: ignore[method-assign]
    try:
        producer = await transport.create_producer("events")
        await producer.send(OutgoingMessage(b"e1"))
        await _until(lambda: relay.relayed == 1)  # given back, received again, relayed
        assert relay.consuming
        assert [m.data for m in broker.peek("out", "test")] == [b"e1"]
        assert calls == 2
        await producer.send(OutgoingMessage(b"e2"))
        await _until(lambda: relay.relayed == 2)
    finally:
        await relay.stop()
        await transport.close()
