"""Every CLI failure of issue 16 is one line naming what to fix, with its exit code; --debug
shows the traceback; dispatch reads the worker's config and environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "pulsar://127.0.0.1:6999"


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("INFINITIC_") and k != "PULSAR_URL"}
    return subprocess.run(
        [sys.executable, "-m", "infinitic_py.cli", *args], cwd=cwd, capture_output=True,
        text=True, timeout=60, env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("infinitic-py: "), lines[0]
    return lines[0]


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("infinitic-py ")


def test_http_port_in_use_is_one_line_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "worker.yaml"
        config.write_text(
            "pulsar:\n  url: memory://cli-port\n  admin_url: null\n"
            f"worker:\n  http_host: 127.0.0.1\n  http_port: {port}\n"
            "services:\n  - class: examples.email_service:EmailService\n")
        out = run("worker", "-c", str(config))
    assert out.returncode == 2, out
    line = one_line(out)
    assert f"worker.http_port {port} is already in use" in line
    assert "INFINITIC_WORKER__HTTP_PORT" in line


def test_import_error_inside_the_users_module_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "brokensvc.py").write_text(
        "from infinitic_py import task\n\nimport not_a_module_anywhere  # line 3\n\n"
        "class Svc:\n    @task\n    def go(self) -> None: ...\n")
    config = tmp_path / "worker.yaml"
    config.write_text("pulsar:\n  url: memory://cli-import\nservices:\n  - class: brokensvc:Svc\n")
    for command in (["check", "-c", str(config), "--offline"], ["worker", "-c", str(config)]):
        out = run(*command, cwd=tmp_path)
        assert out.returncode == 2, out
        line = one_line(out)
        assert "not_a_module_anywhere" in line and "(at brokensvc.py:3)" in line, line


def test_syntax_error_in_the_users_module_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "syntaxsvc.py").write_text("class Svc:\n    def go(self)\n        pass\n")
    config = tmp_path / "worker.yaml"
    config.write_text("services:\n  - class: syntaxsvc:Svc\n")
    out = run("check", "-c", str(config), "--offline", cwd=tmp_path)
    assert out.returncode == 2
    assert "syntaxsvc.py:2" in one_line(out)


def test_dispatch_to_an_unreachable_broker_fails_at_once() -> None:
    out = run("dispatch", "Svc", "go", "[1]", "--url", UNREACHABLE)
    assert out.returncode == 1, out
    line = one_line(out)
    assert "cannot reach the broker at pulsar://127.0.0.1:6999" in line
    assert "INFINITIC_PULSAR__URL" in line


def test_dispatch_reads_the_config_file_and_the_worker_env(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(f"pulsar:\n  url: {UNREACHABLE}\n")  # no services: fine for a tool
    from_file = run("dispatch", "Svc", "go", "-c", str(config))
    assert from_file.returncode == 1 and "127.0.0.1:6999" in one_line(from_file)
    from_env = run("dispatch", "Svc", "go", env={"INFINITIC_PULSAR__URL": "pulsar://127.0.0.1:6998"})
    assert from_env.returncode == 1 and "127.0.0.1:6998" in one_line(from_env)
    # The flag wins over both.
    flag = run("dispatch", "Svc", "go", "-c", str(config), "--url", "pulsar://127.0.0.1:6997",
               env={"INFINITIC_PULSAR__URL": "pulsar://127.0.0.1:6998"})
    assert "127.0.0.1:6997" in one_line(flag)
    bad = run("dispatch", "Svc", "go", env={"INFINITIC_PULSAR__URL": "http://nope"})
    assert bad.returncode == 2 and "pulsar.url" in one_line(bad)
    helptext = run("dispatch", "--help").stdout
    assert "INFINITIC_PULSAR__URL" in helptext and "-c CONFIG" in helptext


def test_debug_shows_the_traceback() -> None:
    out = run("dispatch", "Svc", "go", "--url", UNREACHABLE, "--debug")
    assert out.returncode == 1 and "Traceback" in out.stderr


def test_dlq_and_status_fail_in_one_line_too(tmp_path: Path) -> None:
    out = run("dlq", "list", "Svc", "--url", UNREACHABLE)
    assert out.returncode == 1 and "cannot reach the broker" in one_line(out)
    status = run("status", "--admin-url", "http://127.0.0.1:6999")
    assert status.returncode == 1 and "admin API" in one_line(status)
    since = run("dlq", "list", "Svc", "--since", "yesterday-ish", "--url", UNREACHABLE)
    assert since.returncode == 2 and "not a time" in one_line(since)
