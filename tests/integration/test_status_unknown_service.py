"""``status --service NAME`` for a service the namespace does not have says so (it printed an
empty table: "0 service(s)", as for a service with nothing to report)."""

from __future__ import annotations

import json

from .conftest import BrokerInfo
from .test_dlq_cli import acli


async def test_status_of_an_unknown_service_names_it(
    pulsar_broker: BrokerInfo, unique_name: str
) -> None:
    name = f"Typo{unique_name}"
    out = await acli(pulsar_broker, "status", "--service", name)
    assert out.returncode == 0, out.stderr
    assert f"no service {name} in public/default" in out.stdout, out.stdout
    data = json.loads((await acli(pulsar_broker, "status", "--service", name, "--json")).stdout)
    assert (data["services"], data["missing"]) == ([], [name])
