"""A bug in routing must neither stop consuming nor leak the executor's buffer room."""

from __future__ import annotations

import asyncio
from typing import Any

from infinitic_py.transport.base import Producer
from infinitic_py.transport.fixed import FixedTransport
from infinitic_py.worker.executor import ServiceExecutor
from infinitic_py.worker.settings import ExecutorSettings

from ..test_executor_shutdown import OneRunConsumer
from .parts import definition, message


def _no_producer(topic: str) -> Producer:
    raise AssertionError(f"nothing is published here ({topic})")


async def test_a_routing_bug_gives_the_run_back_and_releases_its_room() -> None:
    consumer = OneRunConsumer([message("a", "one")])
    executor = ServiceExecutor(definition(), FixedTransport(consumer, _no_producer),
                               ExecutorSettings())
    original = executor._router.route_many

    def broken(msgs: Any) -> Any:
        executor._router.route_many = original  # type: ignore[method-assign]
        raise RuntimeError("bug")

    executor._router.route_many = broken  # type: ignore[method-assign]
    await executor.start()
    deadline = asyncio.get_running_loop().time() + 5
    while not consumer.nacked:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    assert [m.data for m in consumer.nacked] == [message("a", "one").data]
    assert executor.held == 0  # its room is back
    assert executor.consuming  # the receive loop goes on
    await executor.stop(grace=1)
    assert not consumer.acked
