"""The dlq tools read without acking, and the broker stops delivering to a consumer holding its
unacked-messages limit (maxUnackedMessagesPerConsumer, 50,000 by default): past it, ``dlq
list`` showed the first letters as if they were all (30 kept, limit 10: "10 dead letter(s)").
The tools now say the reading may be incomplete, and replay / purge run again reach the rest."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import DLQ_SUBSCRIPTION, dead_letter_topic
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import OutgoingMessage, SubscriptionType
from infinitic_py.wire import native as wire

from .conftest import BrokerInfo
from .namespaces import throwaway_namespace
from .test_dlq_cli import ROOT

LIMIT = 10


@pytest.fixture
def limited_namespace(admin: PulsarAdmin) -> Iterator[str]:
    with throwaway_namespace(admin, "dlqlimit", {"maxUnackedMessagesPerConsumer": LIMIT}) as ns:
        yield ns


def _cli(broker: BrokerInfo, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INFINITIC_PULSAR__URL": broker.service_url,
           "INFINITIC_PULSAR__ADMIN_URL": broker.admin_url,
           "INFINITIC_PULSAR__NAMESPACE": namespace}
    env.pop("INFINITIC_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "infinitic_py.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_a_reading_cut_short_by_the_unacked_limit_says_so(
    pulsar_broker: BrokerInfo, limited_namespace: str
) -> None:
    service = "Limited"
    dlq = dead_letter_topic("public", limited_namespace, service)
    transport = create_transport(pulsar_broker.service_url)
    try:
        await transport.ensure_subscription(dlq, DLQ_SUBSCRIPTION, SubscriptionType.SHARED)
        producer = await transport.create_producer(dlq)
        for i in range(3 * LIMIT):
            task = wire.ExecuteTask(task_id=f"t{i}", service=service, method="run",
                                    args=wire.encode_value([i]))
            await producer.send(OutgoingMessage(wire.encode(wire.DeadLetter(
                reason="retries_exhausted", error_type="ValueError", message="m",
                traceback=None, retry_index=0, task_id=task.task_id, service=service,
                method="run", failed_at=time.time(), payload=wire.encode(task)))))
        await producer.close()
    finally:
        await transport.close()

    def listed() -> dict[str, object]:
        out = _cli(pulsar_broker, limited_namespace, "dlq", "list", service, "--json")
        assert out.returncode == 0, out.stderr
        data: dict[str, object] = json.loads(out.stdout)
        return data

    first = await asyncio.to_thread(listed)
    assert (first["count"], first["complete"]) == (LIMIT, False), first
    table = await asyncio.to_thread(_cli, pulsar_broker, limited_namespace, "dlq", "list",
                                    service)
    assert "POSSIBLY INCOMPLETE" in table.stdout, table.stdout

    deleted = 0
    for _ in range(5):  # each purge settles what it could read; the rest comes next time
        out = await asyncio.to_thread(_cli, pulsar_broker, limited_namespace, "dlq", "purge",
                                      service, "--yes", "--json")
        assert out.returncode == 0, out.stderr
        deleted += int(json.loads(out.stdout)["deleted"])
        if deleted == 3 * LIMIT:
            break
    assert deleted == 3 * LIMIT
    last = await asyncio.to_thread(listed)
    assert (last["count"], last["complete"]) == (0, True), last
