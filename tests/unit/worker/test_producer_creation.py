"""ProducerCache creates each key's producer once, and a creation that hangs delays only the
callers of its own key (not every other topic's)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from infinitic_py.producers import ProducerCache
from infinitic_py.transport.base import OutgoingMessage, Producer


class Dummy(Producer):
    def __init__(self, topic: str) -> None:
        self._topic = topic

    async def send(self, message: OutgoingMessage) -> None:
        pass

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_a_hanging_creation_does_not_delay_other_topics() -> None:
    hang = asyncio.Event()
    created: list[str] = []

    async def create(topic: str) -> Producer:
        created.append(topic)
        if topic == "slow":
            await hang.wait()
        return Dummy(topic)

    cache = ProducerCache(create, 8)
    slow = [asyncio.create_task(cache.get("slow")) for _ in range(2)]
    await asyncio.sleep(0)
    fast = await asyncio.wait_for(cache.get("fast"), 2)
    assert fast.topic == "fast"
    hang.set()
    first, second = await asyncio.gather(*slow)
    assert first is second  # created once for both callers
    assert created == ["slow", "fast"]
    await cache.close()


async def test_a_failed_creation_is_retried_by_the_next_caller() -> None:
    attempts = 0

    async def create(topic: str) -> Producer:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("refused")
        return Dummy(topic)

    cache = ProducerCache(create, 8)
    try:
        await cache.get("t")
    except RuntimeError:
        pass
    else:
        raise AssertionError("the first creation fails")
    assert (await cache.get("t")).topic == "t"
    await cache.close()
