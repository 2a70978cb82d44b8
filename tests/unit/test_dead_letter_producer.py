"""The worker's producers: its dead-letter topics get a producer without batching (one entry per
letter, whatever the broker's batch-index ack setting); every other topic keeps batching."""

from __future__ import annotations

from typing import Any

from infinitic_py.producers import dialect_producers
from infinitic_py.transport.memory import MemoryTransport, reset_broker
from infinitic_py.wire import native as wire


class Recording(MemoryTransport):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.unbatched: list[str] = []

    async def create_unbatched_producer(self, topic: str, **options: Any) -> Any:
        self.unbatched.append(topic)
        return await super().create_unbatched_producer(topic, **options)


async def test_dead_letter_topics_are_published_without_batching() -> None:
    transport = Recording("memory://dead-letter-producer")
    try:
        create = dialect_producers(transport, wire.NativeDialect())
        dlq = "persistent://public/default/task-executor-dlq:Email"
        tasks = "persistent://public/default/task-executor:Email"
        for topic in (dlq, tasks):
            await (await create(topic)).close()
        assert transport.unbatched == [dlq]  # the task topic's producer batches
    finally:
        await transport.close()
        reset_broker("dead-letter-producer")
