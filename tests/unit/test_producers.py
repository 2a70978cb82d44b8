"""ProducerCache.publish_each: every topic is published, a failure is pinned to its topic."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from infinitic_py.producers import ProducerCache
from infinitic_py.transport.base import OutgoingMessage, Producer, TransportError


class _Producer(Producer):
    def __init__(self, topic: str, sent: dict[str, list[bytes]], refused: set[str]) -> None:
        self._topic = topic
        self._sent = sent
        self._refused = refused

    async def send(self, message: OutgoingMessage) -> None:
        await self.send_many([message])

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None:
        if self._topic in self._refused:
            raise TransportError(f"refused: {self._topic}")
        self._sent.setdefault(self._topic, []).extend(m.data for m in messages)

    async def close(self) -> None:
        pass


def cache(sent: dict[str, list[bytes]], refused: set[str]) -> ProducerCache:
    async def create(topic: str) -> Producer:
        return _Producer(topic, sent, refused)
    return ProducerCache(create, 8)


async def test_a_refused_topic_fails_alone_and_the_others_are_published() -> None:
    sent: dict[str, list[bytes]] = {}
    producers = cache(sent, {"gone"})
    failures = await producers.publish_each({
        "a": [OutgoingMessage(b"1")], "gone": [OutgoingMessage(b"2")],
        "b": [OutgoingMessage(b"3")]})
    assert list(failures) == ["gone"] and "refused" in str(failures["gone"])
    assert sent == {"a": [b"1"], "b": [b"3"]}
    assert await producers.publish_each({}) == {}
    with pytest.raises(TransportError):  # publish still raises on any failure
        await producers.publish({"gone": [OutgoingMessage(b"4")]})
    await producers.close()
