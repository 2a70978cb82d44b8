"""ProducerCache.sweep: producers unused for max_idle seconds are closed, least recent first;
in-use and pinned ones never are."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from infinitic_py.producers import ProducerCache
from infinitic_py.transport.base import OutgoingMessage, Producer


class _Stub(Producer):
    def __init__(self, topic: str, closed: list[str]) -> None:
        self._topic = topic
        self._closed = closed
        self.done = asyncio.Event()

    @property
    def topic(self) -> str:
        return self._topic

    async def send(self, message: OutgoingMessage) -> None: ...

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None: ...

    async def close(self) -> None:
        self._closed.append(self._topic)
        self.done.set()


async def test_sweep_closes_idle_producers_only() -> None:
    now = [0.0]
    closed: list[str] = []
    made: dict[str, _Stub] = {}

    async def create(topic: str) -> Producer:
        made[topic] = _Stub(topic, closed)
        return made[topic]

    async def closing(*topics: str) -> None:  # the cache closes evicted producers in background
        await asyncio.wait_for(asyncio.gather(*(made[t].done.wait() for t in topics)), 5.0)

    cache = ProducerCache(create, 64, pinned=("own",), max_idle=30.0, clock=lambda: now[0])
    for topic in ("own", "a", "b"):
        await cache.get(topic)
    now[0] = 20.0
    await cache.get("c")
    assert cache.sweep() == 0
    now[0] = 31.0
    with cache.using("b"):
        assert cache.sweep() == 1  # "a"; "b" is in use, "own" is pinned, "c" is recent
    await closing("a")
    assert closed == ["a"]
    now[0] = 51.0
    assert cache.sweep() == 2
    await closing("b", "c")
    assert sorted(closed) == ["a", "b", "c"]
    assert len(cache) == 1  # "own"
    await cache.get("a")  # reopened on demand
    assert len(cache) == 2
    await cache.close()


async def test_no_max_idle_never_sweeps() -> None:
    async def create(topic: str) -> Producer:
        return _Stub(topic, [])

    cache = ProducerCache(create, 4, clock=lambda: 1e9)
    await cache.get("a")
    assert cache.sweep() == 0 and len(cache) == 1
    await cache.close()
