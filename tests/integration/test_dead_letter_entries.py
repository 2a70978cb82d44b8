"""Dead letters are one broker entry each (the worker's dead-letter producer does not batch):
``status`` DEAD is the number of letters (23 letters of one failed many() read DEAD 2 with a
batching producer), and an ops tool's ack of one letter deletes that letter on any broker (a
broker with acknowledgmentAtBatchIndexLevelEnabled=false kept a whole producer batch of
letters when only some of them were purged or replayed)."""

from __future__ import annotations

import json

from infinitic_py import AsyncClient, Call, Worker, task

from .conftest import BrokerInfo
from .harness import poll
from .test_dlq_cli import acli, letters_json


class Failing:
    @task
    def run(self, n: int) -> int:
        raise ValueError(f"bad {n}")


async def test_status_counts_each_dead_letter(pulsar_broker: BrokerInfo, unique_name: str) -> None:
    service = f"Entries{unique_name}"
    worker = Worker(pulsar_broker.service_url, name="entries-test")
    worker.add_service(Failing(), name=service, concurrency=4)
    await worker.start()
    try:
        async with AsyncClient(pulsar_broker.service_url, results=False) as client:
            await client.service(service).run.many([Call(n) for n in range(23)])

        async def count() -> int:
            return int((await letters_json(pulsar_broker, service))["count"])

        assert await poll(count, lambda n: n == 23, 60, every=1.0) == 23
    finally:
        await worker.stop()

    async def dead() -> int:
        out = await acli(pulsar_broker, "status", "--service", service, "--json")
        assert out.returncode == 0, out.stderr
        return int(json.loads(out.stdout)["services"][0]["dead_letters"])

    assert await poll(dead, lambda n: n == 23, 30, every=1.0) == 23
