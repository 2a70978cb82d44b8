"""``infinitic-py check --workers N`` checks a fleet against the service namespace's
maxUnackedMessagesPerSubscription: reaching it stops dispatch to every worker of the service
(the function existed; nothing called it, so check said nothing of fleets)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from infinitic_py.admin import PulsarAdmin

from .conftest import BrokerInfo
from .namespaces import throwaway_namespace

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 1000  # per subscription; one worker below needs 50 + 4 x 50 = 250 at most


@pytest.fixture
def fleet_namespace(admin: PulsarAdmin) -> Iterator[str]:
    with throwaway_namespace(admin, "fleet", {"maxUnackedMessagesPerSubscription": LIMIT}) as ns:
        yield ns


def _check(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infinitic_py.cli", "check", "-c", str(config), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_check_warns_when_the_fleet_reaches_the_subscription_limit(
    pulsar_broker: BrokerInfo, fleet_namespace: str, tmp_path: Path
) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(textwrap.dedent(f"""
        pulsar:
          url: "{pulsar_broker.service_url}"
          admin_url: "{pulsar_broker.admin_url}"
          consumer: {{receiver_queue_size: 50}}
        worker:
          max_buffered_messages: 200
        services:
          - class: "examples.email_service:EmailService"
            namespace: {fleet_namespace}
            concurrency: 4
            batch:
              send: {{max_messages: 50}}
    """))
    where = f"public/{fleet_namespace}"
    alone = _check(config)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "maxUnackedMessagesPerSubscription" in alone.stdout, alone.stdout
    assert not [line for line in alone.stdout.splitlines() if line.startswith("WARN")]

    fleet = _check(config, "--workers", "8")
    assert fleet.returncode == 0, fleet.stdout + fleet.stderr  # a warning; --strict fails it
    warning = next((line for line in fleet.stdout.splitlines()
                    if line.startswith("WARN") and "8 worker(s)" in line), "")
    assert f"maxUnackedMessagesPerSubscription {LIMIT}" in warning, fleet.stdout
    assert "run at most 3 worker(s)" in fleet.stdout, fleet.stdout
    assert f"set-max-unacked-messages-per-subscription {where} -c" in fleet.stdout
    assert _check(config, "--workers", "8", "--strict").returncode == 1


def test_workers_must_be_a_positive_whole_number(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text("pulsar:\n  url: memory://x\nservices:\n"
                      "  - class: examples.email_service:EmailService\n")
    for bad in ("0", "-2", "many"):
        out = _check(config, "--offline", "--workers", bad)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out
        assert len(out.stderr.strip().splitlines()) == 1
