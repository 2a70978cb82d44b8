"""``infinitic-py status`` against the admin API's own counts, with ready and delayed tasks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from infinitic_py import AsyncClient
from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import WORKER_SUBSCRIPTION, service_topic
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import ConsumerSettings

from .conftest import BrokerInfo
from .harness import poll
from .test_dlq_cli import acli


async def status_of(broker: BrokerInfo, *services: str) -> dict[str, dict[str, Any]]:
    args = [a for s in services for a in ("--service", s)]
    out = await acli(broker, "status", "--json", *args)
    assert out.returncode == 0, out.stderr
    return {s["service"]: s for s in json.loads(out.stdout)["services"]}


async def test_status_matches_the_admin_api_with_ready_and_delayed_tasks(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, unique_name: str
) -> None:
    service, ghost = f"Stat{unique_name}", f"Ghost{unique_name}"
    topic = service_topic("public", "default", service)
    transport = create_transport(pulsar_broker.service_url)
    try:
        # A worker stand-in that prefetches and never acks: the broker sorts delayed messages out
        # only as it dispatches (with permits to a consumer).
        consumer = await transport.subscribe(topic, WORKER_SUBSCRIPTION, ConsumerSettings(
            receiver_queue_size=1000, consumer_name=f"stand-in-{unique_name}"))
        async with AsyncClient(pulsar_broker.service_url, results=False) as client:
            stub = client.service(service)
            for n in range(5):
                await stub.run(n)
            for n in range(3):
                await stub.run.options(delay=300)(n)
        # A topic somebody publishes to with no worker subscription at all.
        producer = await transport.create_producer(service_topic("public", "default", ghost))
        await producer.close()

        async def compare() -> tuple[dict[str, Any], dict[str, Any]]:
            row = (await status_of(pulsar_broker, service))[service]
            stats = await asyncio.to_thread(admin.topic_stats, topic)
            return row, stats["subscriptions"][WORKER_SUBSCRIPTION]

        def agree(pair: tuple[dict[str, Any], dict[str, Any]]) -> bool:
            row, sub = pair
            return bool(row["backlog"] == sub["msgBacklog"] == 8
                    and row["ready"] == sub["msgBacklogNoDelayed"] == 5
                    and row["delayed"] == 3 == sub["msgBacklog"] - sub["msgBacklogNoDelayed"]
                    and row["unacked"] == sub["unackedMessages"] == 5)

        row, sub = await poll(compare, agree, 30, every=1.0)
        assert agree((row, sub)), (row, {k: v for k, v in sub.items() if "sg" in k or "nack" in k})
        assert row["state"] == "ok" and row["worker_subscription"] is True
        (worker,) = row["workers"]
        assert worker["name"] == f"stand-in-{unique_name}"
        assert worker["unacked"] == sub["consumers"][0]["unackedMessages"]
        assert row["dead_letters"] is None  # no worker ever created the DLQ subscription

        rows = await status_of(pulsar_broker, ghost)
        assert rows[ghost]["state"] == "no worker subscription"
        assert rows[ghost]["worker_subscription"] is False

        table = await acli(pulsar_broker, "status", "--service", service, "--service", ghost)
        assert table.returncode == 0
        assert service in table.stdout and "no worker subscription" in table.stdout
        await consumer.close()
    finally:
        await transport.close()
        for local in (service, ghost):
            await asyncio.to_thread(admin.delete_topic, service_topic("public", "default", local))


async def test_a_namespace_that_does_not_exist_is_named_not_read_as_empty(
        pulsar_broker: BrokerInfo, unique_name: str) -> None:
    """`dlq list` in a mistyped namespace said "0 dead letter(s)" (exit 0), and `status` blamed
    the admin URL: both name the namespace to check."""
    namespace = f"nope{unique_name}"
    for args in (("status",), ("dlq", "list", "Svc"), ("dlq", "purge", "Svc", "--yes")):
        out = await acli(pulsar_broker, *args, "--namespace", namespace)
        assert out.returncode == 1, (args, out)
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
        assert f"public/{namespace}" in out.stderr and "--namespace" in out.stderr, out.stderr
        assert "dead letter(s)" not in out.stdout
