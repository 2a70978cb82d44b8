"""ProducerCache.sweep: producers unused for max_idle seconds are evicted, least recent first;
in-use and pinned ones never are."""

from __future__ import annotations

from infinitic_py.producers import ProducerCache
from infinitic_py.transport.base import OutgoingMessage, Producer


class _Stub(Producer):
    def __init__(self, topic: str) -> None:
        self._topic = topic

    @property
    def topic(self) -> str:
        return self._topic

    async def send(self, message: OutgoingMessage) -> None: ...

    async def send_many(self, messages: object) -> None: ...

    async def close(self) -> None: ...


async def test_sweep_evicts_idle_producers_only() -> None:
    now = [0.0]
    evicted: list[str] = []

    async def create(topic: str) -> Producer:
        return _Stub(topic)

    cache = ProducerCache(create, 64, lambda p: evicted.append(p.topic), pinned=("own",),
                          max_idle=30.0, clock=lambda: now[0])
    for topic in ("own", "a", "b"):
        await cache.get(topic)
    now[0] = 20.0
    await cache.get("c")
    assert cache.sweep() == 0
    now[0] = 31.0
    with cache.using("b"):
        assert cache.sweep() == 1  # "a"; "b" is in use, "own" is pinned, "c" is recent
    assert evicted == ["a"]
    now[0] = 51.0
    assert cache.sweep() == 2 and evicted == ["a", "b", "c"]
    assert len(cache) == 1  # "own"
    await cache.get("a")  # reopened on demand
    assert len(cache) == 2


async def test_no_max_idle_never_sweeps() -> None:
    async def create(topic: str) -> Producer:
        return _Stub(topic)

    cache = ProducerCache(create, 4, lambda p: None, clock=lambda: 1e9)
    await cache.get("a")
    assert cache.sweep() == 0 and len(cache) == 1
