"""Clients leave no response topic behind; dispatch without a worker fails in one line."""

from __future__ import annotations

import asyncio

from infinitic_py import AsyncClient
from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import RESPONSE_TOPIC_PREFIX, service_topic

from .conftest import BrokerInfo
from .test_dlq_cli import acli


async def test_100_clients_leave_no_response_topic(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, unique_name: str
) -> None:
    service = f"Nobody{unique_name}"
    names: list[str] = []
    for _ in range(100):
        async with AsyncClient(pulsar_broker.service_url) as client:
            # results=True (the default): the response topic and its subscription exist now.
            await client.service(service).go.many([1])
            names.append(client.name)
    topics = await asyncio.to_thread(admin.topics, "public", "default")
    mine = {f"persistent://public/default/{RESPONSE_TOPIC_PREFIX}{n}" for n in names}
    assert mine.isdisjoint(topics), sorted(mine & set(topics))[:5]
    await asyncio.to_thread(admin.delete_topic, service_topic("public", "default", service))


async def test_dispatch_wait_without_a_worker_is_one_line(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, unique_name: str
) -> None:
    service = f"Nobody{unique_name}"
    out = await acli(pulsar_broker, "dispatch", service, "go", "[1]", "--wait", "--timeout", "3")
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "no result for task" in line and "within 3.0s" in line and "infinitic-py status" in line
    await asyncio.to_thread(admin.delete_topic, service_topic("public", "default", service))
