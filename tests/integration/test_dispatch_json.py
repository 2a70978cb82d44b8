"""``infinitic-py dispatch --wait`` prints JSON any parser reads, non-finite floats included."""

from __future__ import annotations

import json
from typing import Any

from infinitic_py import Worker, task

from .conftest import BrokerInfo
from .test_dlq_cli import acli


class Floats:
    @task
    def odd(self, n: int) -> dict[str, Any]:
        return {"nan": float("nan"), "big": [float("inf"), -float("inf"), 1.5], "n": n}


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def test_dispatch_wait_prints_strict_json(pulsar_broker: BrokerInfo,
                                                unique_name: str) -> None:
    service = f"Floats{unique_name}"
    worker = Worker(pulsar_broker.service_url, name="json-test", http_port=None)
    worker.add_service(Floats(), name=service)
    await worker.start()
    try:
        out = await acli(pulsar_broker, "dispatch", service, "odd", "[3]", "--wait",
                         "--timeout", "30")
    finally:
        await worker.stop(grace=5)
    assert out.returncode == 0, out
    line = out.stdout.strip().splitlines()[-1]
    printed = json.loads(line, parse_constant=_refuse)  # jq / JSON.parse refuse bare NaN
    assert printed["result"] == {"nan": "NaN", "big": ["Infinity", "-Infinity", 1.5], "n": 3}
