"""A task whose message is over the broker's maxMessageSize is refused by pulsar-client
(MessageTooBig): the ``DispatchFailed`` says which size was too large and what to do, not only
``pulsar: Result.MessageTooBig``; the other tasks of a plain ``many()`` were sent as usual."""

from __future__ import annotations

import asyncio

import pytest

from infinitic_py import AsyncClient, task
from infinitic_py.errors import DispatchFailed

from .conftest import BrokerInfo

BIG = "x" * (6 * 1024 * 1024)  # over the broker's default maxMessageSize (5 MiB)


class Docs:
    @task
    def store(self, text: str) -> int:
        return len(text)


async def test_a_task_over_the_message_size_limit_is_named_as_such(
    pulsar_broker: BrokerInfo, unique_name: str
) -> None:
    async with AsyncClient(pulsar_broker.service_url, results=False) as client:
        stub = client.service(Docs, name=f"Docs{unique_name}")
        with pytest.raises(DispatchFailed) as one:
            await stub.store(BIG)
        text = str(one.value)
        assert "\n" not in text and "MessageTooBig" in text
        assert "the largest task's message is 6,291," in text
        assert "maxMessageSize" in text and "by reference" in text
        with pytest.raises(DispatchFailed) as many:
            await stub.store.many(["a", BIG, "b"])
        assert len(many.value.sent) == 2 and len(many.value.unsent) == 1
        assert "maxMessageSize" in str(many.value)
        await stub.store("small")  # the producer still works


async def test_a_dispatch_in_flight_when_its_client_closes_says_so(
    pulsar_broker: BrokerInfo, unique_name: str
) -> None:
    """It said 'none was confirmed by the broker (pulsar: Result.AlreadyClosed)', as if the
    broker had failed."""
    client = AsyncClient(pulsar_broker.service_url, results=False)
    stub = client.service(Docs, name=f"Docs{unique_name}")
    await stub.store("warm")  # the producer exists: the next many() goes straight to sending
    dispatch = asyncio.ensure_future(stub.store.many([f"t{i}" for i in range(50_000)]))
    await asyncio.sleep(0)  # the many() encodes (no await) and starts sending
    await client.close()
    with pytest.raises(DispatchFailed, match="the client was closed during the dispatch"):
        await dispatch
