"""A replayed task that fails again comes back as a new dead letter with a clear reason and its
history (first dispatch time kept, publishes counted), and nothing loops: a replay runs once."""

from __future__ import annotations

import json
import threading
from typing import Any

from infinitic_py import AsyncClient, RetryPolicy, Worker, task

from .conftest import BrokerInfo
from .harness import poll
from .test_dlq_cli import acli, letters_json


class Broken:
    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    @task
    def run(self, n: int) -> int:
        with self._lock:
            self.calls += 1
        raise ValueError(f"still broken {n}")


async def test_a_replayed_task_that_fails_again_comes_back_with_its_history(
    pulsar_broker: BrokerInfo, unique_name: str
) -> None:
    service = f"Hist{unique_name}"
    broken = Broken()
    worker = Worker(pulsar_broker.service_url, name="hist-test")
    worker.add_service(broken, name=service, concurrency=1,
                       retry=RetryPolicy(maximum_retries=1, minimum_seconds=0.1,
                                         maximum_seconds=0.2, random_factor=0.0))
    await worker.start()
    try:
        async with AsyncClient(pulsar_broker.service_url, results=False) as client:
            await client.service(service).run(7)

        async def letters() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = (await letters_json(pulsar_broker, service))["letters"]
            return found

        (first,) = await poll(letters, lambda found: len(found) == 1, 60, every=1.0)
        assert (first["reason"], first["retry_index"], first["publishes"]) == (
            "retries_exhausted", 1, 2)
        assert broken.calls == 2

        replay = await acli(pulsar_broker, "dlq", "replay", service, "--json")
        assert replay.returncode == 0 and json.loads(replay.stdout)["replayed"] == 1

        def again(found: list[dict[str, Any]]) -> bool:
            return len(found) == 1 and found[0]["publishes"] > 2

        (second,) = await poll(letters, again, 60, every=1.0)
        assert second["task_id"] == first["task_id"]
        assert (second["reason"], second["retry_index"], second["message"]) == (
            "retries_exhausted", 1, "still broken 7")
        # dispatch + retry, replay + retry
        assert second["publishes"] == 4
        assert second["first_dispatched_at"] == first["first_dispatched_at"] != "-"
        shown = await acli(pulsar_broker, "dlq", "show", service, second["task_id"])
        assert "publishes           4" in shown.stdout, shown.stdout
        assert broken.calls == 4  # the replay ran once (and its retry), no more
    finally:
        await worker.stop()
