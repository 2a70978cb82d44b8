"""Fixtures for the Infinitic interop tests: the project's broker (shared with tests/integration)
and a genuine Infinitic 0.18.4 JVM (see ``jvm.py``), skipped with one line when it cannot run."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infinitic_py.admin import PulsarAdmin
from tests.integration import conftest as _integration
from tests.integration.conftest import BrokerInfo

from . import jvm
from .namespaces import drop_namespace

pytest.importorskip("fastavro", reason="the `infinitic` extra (fastavro) is not installed")

SESSION = uuid.uuid4().hex[:6]
# the project's broker, as tests/integration gets it (PULSAR_URL, 127.0.0.1:6650, or started)
pulsar_broker = _integration.pulsar_broker
admin = _integration.admin


@pytest.fixture(scope="session")
def jvm_project() -> Path:
    reason = jvm.missing()
    if reason:
        pytest.skip(reason)
    return jvm.build()


@pytest.fixture
def interop_namespace(admin: PulsarAdmin) -> Iterator[str]:
    """A namespace of its own per test (the JVM creates it with Infinitic's policies)."""
    name = f"py-interop-{SESSION}-{uuid.uuid4().hex[:6]}"
    yield name
    drop_namespace(admin, name)


StartJvm = Callable[..., jvm.JvmRunner]


@pytest.fixture
def start_jvm(
    jvm_project: Path, pulsar_broker: BrokerInfo, interop_namespace: str, tmp_path: Path
) -> Iterator[StartJvm]:
    """``start_jvm("mode=external", "workflows=2", ...)`` -> a running ``bench.MainKt``."""
    config = jvm.write_config(
        tmp_path / "config", interop_namespace, pulsar_broker.service_url, pulsar_broker.admin_url
    )
    runners: list[jvm.JvmRunner] = []
    env = {"PULSAR_URL": pulsar_broker.service_url, "PULSAR_ADMIN_URL": pulsar_broker.admin_url}

    def start(*args: str, main: str = "bench.MainKt") -> jvm.JvmRunner:
        log = tmp_path / f"jvm-{len(runners)}.log"
        runner = jvm.JvmRunner(
            jvm_project, config, log, f"namespace={interop_namespace}", *args, env=env, main=main
        )
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        runner.stop()
