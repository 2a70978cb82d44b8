"""One harness for the behaviour suite, on either transport: the in-process broker or Pulsar."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import WORKER_SUBSCRIPTION
from infinitic_py.transport.base import Consumer
from infinitic_py.transport.memory import MemoryBroker
from infinitic_py.wire import native as wire

T = TypeVar("T")


@dataclass
class Harness:
    kind: str  # "memory" | "pulsar"
    url: str
    tenant: str
    namespace: str
    admin: PulsarAdmin | None = None
    broker: MemoryBroker | None = None

    def topic(self, local: str) -> str:
        return f"persistent://{self.tenant}/{self.namespace}/{local}"

    async def counts(self, topic: str, subscription: str = WORKER_SUBSCRIPTION) -> tuple[int, int]:
        """(backlog, unacked) of a subscription, from the admin API or the in-process broker."""
        if self.broker is not None:
            return self.broker.subscription_counts(topic, subscription)
        assert self.admin is not None
        return await asyncio.to_thread(self.admin.subscription_counts, topic, subscription)

    async def wait_drained(
        self, topic: str, subscription: str = WORKER_SUBSCRIPTION, timeout: float = 30.0
    ) -> tuple[int, int]:
        """Poll (the broker refreshes stats every second) until backlog and unacked are 0."""
        return await poll(lambda: self.counts(topic, subscription), lambda c: c == (0, 0), timeout)


async def poll(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float, every: float = 0.2
) -> T:
    """Poll ``probe`` until ``done`` holds; the last value is returned either way (assert on it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(every)


async def wait_for_condition(
    check: Callable[[], bool], timeout: float, every: float = 0.05
) -> bool:
    async def probe() -> bool:
        return check()

    return await poll(probe, bool, timeout, every)


def anything(_: Any) -> bool:
    return True


async def receive_letters(consumer: Consumer, count: int, timeout: float = 30,
                          *, then_quiet: float | None = None) -> list[wire.DeadLetter]:
    """``count`` dead letters (acked as read) within ``timeout``; with ``then_quiet``, also
    whatever else arrives until none has for that many seconds (a test then asserts there was
    nothing more)."""
    letters: list[wire.DeadLetter] = []

    async def take(msg_timeout: float | None) -> None:
        msg = await asyncio.wait_for(consumer.receive(), msg_timeout)
        letters.append(wire.decode_dead_letter(msg.data))
        await consumer.acknowledge([msg])

    async with asyncio.timeout(timeout):
        while len(letters) < count:
            await take(None)
    if then_quiet is not None:
        with contextlib.suppress(TimeoutError):
            while True:
                await take(then_quiet)
    return letters
