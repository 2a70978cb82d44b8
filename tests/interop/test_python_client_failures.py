"""A Python client against a JVM service that fails and takes edge values (suite overlay
``FailingService``, ``mode=serve file=failing.yml``: Infinitic's retry policy retries each
failure twice, 0.2 s apart). Every call ends in a result or one ``TaskFailed`` naming the JVM
exception, within seconds: never a hang."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from infinitic_py import task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.client import AsyncClient
from infinitic_py.errors import TaskFailed
from tests.integration.conftest import BrokerInfo

from .conftest import StartJvm
from .namespaces import TENANT, wait_consumer

pytestmark = pytest.mark.timeout(1200)  # the first JVM test of a session may build the example


class Mirrored(msgspec.Struct):
    n: int
    text: str | None
    values: dict[str, list[float] | None]


class FailingService:
    """The JVM service's stub."""

    @task
    def refuse(self, message: str) -> str:
        raise NotImplementedError  # served by the JVM

    @task
    def special(self, kind: str, x: float) -> float:
        raise NotImplementedError

    @task
    def mirror(self, n: int, text: str | None, values: dict[str, list[float] | None]) -> Mirrored:
        raise NotImplementedError


async def test_jvm_failures_and_edge_values_reach_the_python_client(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, admin: PulsarAdmin, interop_namespace: str
) -> None:
    runner = start_jvm("mode=serve", "file=failing.yml")
    await asyncio.to_thread(runner.wait_for, r"SERVING", 300)
    await asyncio.to_thread(wait_consumer, admin, interop_namespace, "task-executor:FailingService",
                            "task-executor-subscription", 180)
    async with AsyncClient(pulsar_broker.service_url, wire="infinitic", tenant=TENANT,
                           namespace=interop_namespace, admin_url=pulsar_broker.admin_url,
                           name="py-failures") as client:
        svc = client.service(FailingService)
        refused = await svc.refuse("x")
        text = "h\u00e9llo \U0001f600 \u0000 " + "z" * 300_000
        edges = [await svc.mirror(n, t, v) for n, t, v in (
            (2**63 - 1, text, {"a": [1.5, -0.0, 1.7976931348623157e308], "b": []}),
            (-(2**63), None, {}),
        )]
        overflow = await svc.mirror(2**63, "t", {})
        biggest = await svc.special("x", 1.7976931348623157e308)

        # the JVM's exception after its retry policy's 2 retries: class, message, JVM stack
        with pytest.raises(TaskFailed) as failed:
            await refused.result(timeout=60)
        err = failed.value
        assert (err.error_type, err.message) == ("java.lang.IllegalStateException", "refused by the JVM: x")
        assert err.retry_index == 2, str(err)  # was 0: 'failed after 0 retries'
        assert "failed after 2 retries" in str(err)
        assert err.traceback and "bench.FailingServiceImpl.refuse" in err.traceback
        assert "ArithmeticException: root cause" in err.traceback

        assert await edges[0].result(timeout=60) == Mirrored(
            2**63 - 1, text, {"a": [1.5, -0.0, 1.7976931348623157e308], "b": []})
        assert await edges[1].result(timeout=60) == Mirrored(-(2**63), None, {})
        assert await biggest.result(timeout=60) == 1.7976931348623157e308
        # a number beyond the JVM's long: the JVM refuses the argument, at once and clearly
        with pytest.raises(TaskFailed, match=r"ArgumentDeserializationException.*'n' \(type 'long'\)"):
            await overflow.result(timeout=60)
