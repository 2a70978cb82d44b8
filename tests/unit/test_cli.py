"""The CLI's contract with operators: config mistakes are one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infinitic_py.cli", *args], cwd=cwd, capture_output=True,
        text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_misspelt_key_is_one_line_naming_it_with_exit_code_2(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(
        "pulsar:\n  url: memory://cli\nservices:\n"
        "  - class: examples.email_service:EmailService\n    concurency: 3\n"
    )
    for command in ("check", "worker"):
        out = run(command, "-c", str(config))
        assert out.returncode == 2, out
        assert "Traceback" not in out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert "'concurency'" in line and "did you mean 'concurrency'" in line
        assert "services[0]" in line


def test_wrong_type_and_missing_file_are_one_line_too(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(
        "services:\n  - class: examples.email_service:EmailService\n    concurrency: ten\n"
    )
    out = run("check", "-c", str(config))
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "services[0].concurrency" in out.stderr and "int" in out.stderr
    missing = run("check", "-c", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_bad_service_class_and_bad_twin_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text("services:\n  - class: examples.nowhere:Nothing\n")
    out = run("check", "-c", str(config), "--offline")
    assert out.returncode == 2 and "cannot import service class" in out.stderr
    module = tmp_path / "badtwin.py"
    module.write_text(
        "from infinitic_py import task\n"
        "class Bad:\n"
        "    @task\n"
        "    def go(self, x: int) -> int: return x\n"
        "    @go.batch()\n"
        "    def go_batch(self, xs: list[int]) -> dict[str, int]: return {}\n"
    )
    config.write_text("services:\n  - class: badtwin:Bad\n")
    out = run("check", "-c", str(config), "--offline", cwd=tmp_path)
    assert out.returncode == 2
    assert "batch method 'go_batch'" in out.stderr and "dict[str, I]" in out.stderr


def test_check_offline_passes_on_the_example_config() -> None:
    out = run("check", "-c", "deploy/worker.example.yaml", "--offline")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok    service EmailService" in out.stdout


def test_check_shows_the_topics_an_infinitic_service_consumes(tmp_path: Path) -> None:
    """An Infinitic service has no priority-band topics: check names the dialect's own."""
    config = tmp_path / "worker.yaml"
    config.write_text(
        "pulsar:\n  url: memory://cli\nservices:\n"
        "  - class: examples.email_service:EmailService\n    wire: infinitic\n"
        "    event_handler: true\n"
    )
    out = run("check", "-c", str(config), "--offline")
    assert out.returncode == 0, out
    assert "priority bands" not in out.stdout
    assert "task-executor:EmailService" in out.stdout
    assert "task-events:EmailService" in out.stdout and ":high" not in out.stdout
