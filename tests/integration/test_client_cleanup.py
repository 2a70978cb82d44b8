"""Clients leave no response topic behind; dispatch without a worker fails in one line."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from infinitic_py import AsyncClient, Worker
from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import RESPONSE_TOPIC_PREFIX, dead_letter_topic, service_topic
from tests.unit.plain_service import Plain

from .conftest import BrokerInfo
from .harness import poll
from .test_dlq_cli import acli


async def test_100_clients_leave_no_response_topic(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, unique_name: str
) -> None:
    service = f"Nobody{unique_name}"
    names: list[str] = []
    for _ in range(100):
        async with AsyncClient(pulsar_broker.service_url,
                               admin_url=pulsar_broker.admin_url) as client:
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


async def test_clients_a_worker_replied_to_leave_no_response_topic(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker closes its idle reply producers, so the deleted topics are not recreated by
    their reconnect."""
    from infinitic_py.worker import executor as executor_module

    monkeypatch.setattr(executor_module, "_REPLY_PRODUCER_IDLE", 1.0)
    service = f"Replies{unique_name}"
    worker = Worker(pulsar_broker.service_url, name="cleanup-test")
    worker.add_service(Plain(), name=service)
    names: list[str] = []
    await worker.start()
    try:
        clients = [AsyncClient(pulsar_broker.service_url, admin_url=pulsar_broker.admin_url)
                   for _ in range(5)]
        for client in clients:
            (d,) = await client.service(service).go.many([7])
            assert await d.result(timeout=30) == 7
            names.append(client.name)
        executor = worker.executors[0]
        idle = await poll(_const(executor), lambda e: len(e._producers) == 0, 10)
        assert len(idle._producers) == 0  # the reply producers were closed once idle
        for client in clients:
            await client.close()

        async def leftovers() -> set[str]:
            topics = set(await asyncio.to_thread(admin.topics, "public", "default"))
            return {n for n in names
                    if f"persistent://public/default/{RESPONSE_TOPIC_PREFIX}{n}" in topics}

        await asyncio.sleep(2.0)  # a reconnecting producer would have recreated them by now
        assert await leftovers() == set()
    finally:
        await worker.stop()
        for local in (service_topic("public", "default", service),
                      dead_letter_topic("public", "default", service)):
            await asyncio.to_thread(admin.delete_topic, local)


def _const(value: Any) -> Callable[[], Awaitable[Any]]:
    async def probe() -> Any:
        return value

    return probe
