"""`make run` (README "Quick start"): the demo works on the embedded broker, and with a broker
URL that does not answer it ends with one line saying so, not a traceback after two minutes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("INFINITIC_", "PULSAR_"))}
    return subprocess.run([sys.executable, "-m", "examples.demo"], cwd=ROOT, capture_output=True,
                          text=True, timeout=90, env={**base, **env})


def test_the_demo_runs_on_the_embedded_broker() -> None:
    out = demo({})
    assert out.returncode == 0, out
    assert "demo OK" in out.stdout and "35 completed, 1 failed" in out.stdout


def test_an_unreachable_broker_is_one_line_naming_it() -> None:
    out = demo({"PULSAR_URL": "pulsar://127.0.0.1:6999", "DEMO_CONNECT_TIMEOUT": "2"})
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("demo: ") and "pulsar://127.0.0.1:6999" in last, last
    assert "make run PULSAR=1" in last, last
    # the setting a `make run` user has (README): not the worker config's key
    assert "not reachable within 2s (DEMO_CONNECT_TIMEOUT)" in last, last

