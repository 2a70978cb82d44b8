"""`dlq`, `status` and `dispatch` with `-c worker.yaml` look for a service where the config's `services`
put it (its own namespace), on the real broker.

Before: only the config's `pulsar` section was read, so for a service with `namespace: X`
`dlq list S -c worker.yaml` looked in public/default and said "0 dead letter(s) of S (no
persistent://public/default/task-executor-dlq:S topic ...)", exit 0, and `status -c worker.yaml`
showed public/default only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from infinitic_py import AsyncClient, Call, Worker, task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import (
    DLQ_SUBSCRIPTION,
    WORKER_SUBSCRIPTION,
    dead_letter_topic,
    service_topic,
)

from .conftest import BrokerInfo
from .harness import poll
from .namespaces import throwaway_namespace
from .test_dlq_cli import acli


class Failing:
    @task
    def run(self, n: int) -> int:
        raise ValueError(f"bad {n}")


async def test_dlq_and_status_read_a_declared_service_in_its_own_namespace(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, unique_name: str, tmp_path: Path
) -> None:
    service = f"OwnNs{unique_name}"
    with throwaway_namespace(admin, "ownns", {}) as namespace:
        config = tmp_path / "worker.yaml"
        config.write_text(f"services:\n  - class: {__name__}:Failing\n    name: {service}\n"
                          f"    namespace: {namespace}\n")
        worker = Worker(pulsar_broker.service_url, namespace=namespace, name="ownns-test")
        worker.add_service(Failing(), name=service)
        await worker.start()
        try:
            async with AsyncClient(pulsar_broker.service_url, namespace=namespace,
                                   results=False) as client:
                await client.service(service).run.many([Call(n) for n in range(3)])
            dlq = dead_letter_topic("public", namespace, service)
            kept = await poll(lambda: asyncio.to_thread(admin.subscription_counts, dlq,
                                                        DLQ_SUBSCRIPTION),
                              lambda counts: counts[0] >= 3, 60)
            assert kept[0] == 3, kept
        finally:
            await worker.stop()

        async def tool(*args: str) -> Any:
            out = await acli(pulsar_broker, *args, "-c", str(config))
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout) if "--json" in args else out.stdout

        listed = await tool("dlq", "list", service, "--json")
        assert (listed["count"], listed["topic"]) == (3, dlq), listed
        text = await tool("dlq", "list", service)
        assert f"3 dead letter(s) of {service}" in text, text
        # an explicit flag still wins
        elsewhere = await tool("dlq", "list", service, "--namespace", "default", "--json")
        assert elsewhere["count"] == 0 and "/default/" in elsewhere["topic"], elsewhere

        # status without --service: pulsar's namespace and the service's own
        everything = await tool("status", "--json")
        assert everything["namespaces"] == ["public/default", f"public/{namespace}"], everything
        (row,) = [s for s in everything["services"] if s["service"] == service]
        assert (row["namespace"], row["dead_letters"]) == (namespace, 3), row
        table = await tool("status")
        assert f"namespace public/{namespace}: 1 service(s)" in table, table
        one = await tool("status", "--service", service, "--json")
        assert [(s["service"], s["dead_letters"]) for s in one["services"]] == [(service, 3)]
        assert one["missing"] == [] and one["namespaces"] == [f"public/{namespace}"], one

        dry = await tool("dlq", "replay", service, "--dry-run")
        assert f"would replay 3 task(s) to {service}" in dry and "event" not in dry, dry
        purged = await tool("dlq", "purge", service, "--yes", "--json")
        assert purged["deleted"] == 3, purged

        # dispatch sends the task where the service's workers consume (before: public/default)
        await tool("dispatch", service, "run", "[7]")
        ready = await poll(lambda: asyncio.to_thread(
            admin.subscription_counts, service_topic("public", namespace, service),
            WORKER_SUBSCRIPTION), lambda counts: counts[0] >= 1, 30)
        assert ready[0] == 1, ready
