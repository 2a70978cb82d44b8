"""Fixtures for tests against a real Apache Pulsar broker.

Which broker:
1. ``PULSAR_URL`` (and ``PULSAR_ADMIN_URL``, default ``http://<host>:8080``) when set;
2. else whatever answers on ``127.0.0.1:6650`` (admin on ``:8080``), e.g. ``make pulsar-up``;
3. else ``deploy/pulsar-standalone/pulsar.sh up`` starts the local standalone broker, and the last
   session using it stops it (same protocol as ``with-broker.sh``: shared lock on
   ``.cache/pulsar-run/users.lock``, ``auto-stop`` marker).

A broker that cannot be had is a failure, never a skip: these tests are the proof that the product
works against Pulsar, and a silently skipped suite proves nothing (least of all on CI).
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from infinitic_py.admin import PulsarAdmin

from .harness import Harness

ROOT = Path(__file__).resolve().parents[2]
PULSAR_SH = ROOT / "deploy" / "pulsar-standalone" / "pulsar.sh"
RUN_DIR = ROOT / ".cache" / "pulsar-run"
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BrokerInfo:
    service_url: str
    admin_url: str


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration carries the ``integration`` marker."""
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _wait_healthy(admin: PulsarAdmin, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if admin.healthy():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


@pytest.fixture(scope="session")
def pulsar_broker() -> Iterator[BrokerInfo]:
    host = "127.0.0.1"
    broker_port = int(os.environ.get("PULSAR_BROKER_PORT", "6650"))
    web_port = int(os.environ.get("PULSAR_WEB_PORT", "8080"))

    service_url = os.environ.get("PULSAR_URL")
    if service_url:
        admin_url = os.environ.get("PULSAR_ADMIN_URL") or (
            f"http://{urllib.parse.urlsplit(service_url).hostname or host}:{web_port}"
        )
        info = BrokerInfo(service_url, admin_url)
        if not _wait_healthy(PulsarAdmin(admin_url, timeout=5), 30):
            pytest.fail(
                f"PULSAR_URL={service_url} is set but {admin_url} is not healthy", pytrace=False
            )
        yield info
        return

    info = BrokerInfo(f"pulsar://{host}:{broker_port}", f"http://{host}:{web_port}")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    lock: IO[bytes] = (RUN_DIR / "users.lock").open("wb")  # not inherited by children
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)
        if not _port_open(host, broker_port):
            env = {**os.environ, "PULSAR_AUTO_STOP": "1"}
            proc = subprocess.run(
                [str(PULSAR_SH), "up"], env=env, capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                pytest.fail(
                    f"could not start the local Pulsar broker ({PULSAR_SH} up, exit "
                    f"{proc.returncode}):\n{proc.stdout}\n{proc.stderr}",
                    pytrace=False,
                )
        elif not _wait_healthy(PulsarAdmin(info.admin_url, timeout=5), 60):
            pytest.fail(
                f"something answers on {host}:{broker_port} but {info.admin_url} is not a healthy Pulsar admin",
                pytrace=False,
            )
        yield info
    finally:
        _leave(lock)


def _leave(lock: IO[bytes]) -> None:
    """Last user out stops a broker that a session (not a person) started."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()  # another session still uses the broker; it will stop it
        return
    try:
        if (RUN_DIR / "auto-stop").exists():
            subprocess.run([str(PULSAR_SH), "down"], check=False)
    finally:
        lock.close()


@pytest.fixture(scope="session")
def admin(pulsar_broker: BrokerInfo) -> PulsarAdmin:
    return PulsarAdmin(pulsar_broker.admin_url, auth_token=os.environ.get("PULSAR_AUTH_TOKEN"))


@pytest.fixture
def unique_name() -> str:
    """A fresh name per test for topics, subscriptions and services: ``t`` + 10 hex digits."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["memory", "pulsar"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The behaviour suite's transport: the in-process broker, then the real one."""
    if request.param == "memory":
        from infinitic_py.transport.memory import get_broker, reset_broker

        name = f"behaviour-{uuid.uuid4().hex[:8]}"
        yield Harness("memory", f"memory://{name}", "public", "default", broker=get_broker(name))
        reset_broker(name)
    else:
        broker: BrokerInfo = request.getfixturevalue("pulsar_broker")
        admin: PulsarAdmin = request.getfixturevalue("admin")
        yield Harness("pulsar", broker.service_url, "public", "default", admin=admin)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes a test starts; any still running at its end is killed."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
