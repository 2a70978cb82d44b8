"""The per-call options: the same names for ``Call.build``,
``stub.method.options`` and the sync client's ``options``, checked at run time too."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from infinitic_py import AsyncClient, Call, Client
from infinitic_py.topics import service_topic
from infinitic_py.transport.base import SubscriptionType
from infinitic_py.transport.memory import MemoryTransport, get_broker
from infinitic_py.wire import native as wire


def test_build_takes_the_options_and_rejects_other_names() -> None:
    call = Call.build((1,), {"delay": 3}, tags=["t"], priority=9)
    assert (call.args, call.kwargs, call.tags, call.priority) == ((1,), {"delay": 3}, ["t"], 9)
    bad: dict[str, Any] = {"delya": 2}
    with pytest.raises(TypeError, match="delya"):
        Call.build((1,), **bad)


async def test_stub_options_reach_the_message() -> None:
    name = f"opts-{uuid.uuid4().hex[:8]}"
    topic = service_topic("public", "default", "Svc:high")
    await MemoryTransport(f"memory://{name}").ensure_subscription(topic, "t",
                                                                 SubscriptionType.SHARED)
    async with AsyncClient(f"memory://{name}", results=False) as client:
        run = client.service("Svc").run
        d = await run.options(task_id="the-id", priority=9, meta={"n": 1})(7)
        assert d.task_id == "the-id"
        bad: dict[str, Any] = {"delya": 2}
        with pytest.raises(TypeError, match="delya"):
            run.options(**bad)
    (message,) = get_broker(name).peek(topic, "t")
    task = wire.decode_execute(message.data)
    assert (task.task_id, task.priority, task.meta) == ("the-id", 9, {"n": 1})
    assert msgspec.msgpack.decode(task.args) == [7]


def test_sync_options_are_the_same() -> None:
    with Client(f"memory://sync-opts-{uuid.uuid4().hex[:8]}", results=False) as client:
        d = client.service("Svc").run.options(task_id="sync-id")(1)
        assert d.task_id == "sync-id"

