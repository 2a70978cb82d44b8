"""The CLI as a user meets it (README "CLI"): every usage or configuration mistake is one line on
stderr with exit code 2, a runtime failure one line with exit code 1, never a traceback, and a
broker that does not answer is bounded by --connect-timeout."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infinitic_py.ops.settings import load_tool_settings
from tests.unit.test_cli_failures import UNREACHABLE, one_line, run


def usage_line(*args: str) -> str:
    out = run(*args)
    assert out.returncode == 2, out
    return one_line(out)


def test_usage_mistakes_are_one_line_with_exit_code_2() -> None:
    line = usage_line("dispatch", "Svc", "go", "--delay", "abc")
    assert "--delay" in line and "abc" in line and "infinitic-py dispatch --help" in line
    assert "unknown-command" in usage_line("unknown-command")
    assert "--nope" in usage_line("status", "--nope")
    assert "infinitic-py dlq --help" in usage_line("dlq")
    assert "command" in usage_line()


@pytest.mark.parametrize("args", [
    ("dispatch", "Svc", "go", "--delay", "-5", "--url", UNREACHABLE),
    ("dispatch", "Svc", "go", "--delay", "nan", "--url", UNREACHABLE),
    ("dispatch", "Svc", "go", "--delay", "1e300", "--url", UNREACHABLE),
    ("dispatch", "Svc", "go", "--wait", "--timeout", "-1", "--url", UNREACHABLE),
    ("dispatch", "Svc", "go", "--connect-timeout", "0", "--url", UNREACHABLE),
    ("dlq", "list", "Svc", "--connect-timeout", "-1", "--url", UNREACHABLE),
    ("status", "--watch", "0", "--admin-url", "http://127.0.0.1:6999"),
])
def test_durations_must_be_positive_numbers(args: tuple[str, ...]) -> None:
    option = next(a for a in args if a in ("--delay", "--timeout", "--connect-timeout", "--watch"))
    line = usage_line(*args)
    assert option in line, line
    assert "Traceback" not in line and "--debug" not in line


@pytest.mark.parametrize("command", [("worker",), ("check", "--offline")])
def test_worker_and_check_without_a_config_file_say_how_to_give_one(
        command: tuple[str, ...]) -> None:
    line = usage_line(*command)
    assert "-c" in line and "INFINITIC_CONFIG" in line, line


def test_invalid_yaml_names_the_line_not_the_yaml_library(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text("pulsar: [\n")
    line = usage_line("check", "-c", str(config), "--offline")
    assert "invalid YAML at line 2" in line
    assert "yaml/" not in line and "site-packages" not in line, line


@pytest.mark.parametrize("url", ["pulsar://127.0.0.1:notaport", "pulsar://127.0.0.1:99999",
                                 "pulsar+ssl://:6651"])
def test_a_broker_url_without_a_valid_host_and_port_is_a_config_error(
        tmp_path: Path, url: str) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(f"pulsar:\n  url: '{url}'\nservices:\n  - class: examples.demo:InvoiceService\n")
    assert "pulsar.url" in usage_line("check", "-c", str(config))
    assert "pulsar.url" in usage_line("dispatch", "Svc", "go", "--url", url)


def test_tools_read_the_admin_api_of_the_broker_they_are_pointed_at(tmp_path: Path) -> None:
    """`status --url pulsar://HOST:6650` must not read another broker's admin API (the
    config default http://127.0.0.1:8080): the admin URL follows the broker's host unless one is
    given (flag, variable or file), as the client's does."""
    remote = load_tool_settings(None, url="pulsar://broker.example:6650", env={})
    assert remote.pulsar.admin_url == "http://broker.example:8080"
    tls = load_tool_settings(None, url="pulsar+ssl://broker.example:6651", env={})
    assert tls.pulsar.admin_url == "https://broker.example:8443"
    from_env = load_tool_settings(None, env={"INFINITIC_PULSAR__URL": "pulsar://b2:6650"})
    assert from_env.pulsar.admin_url == "http://b2:8080"
    flag = load_tool_settings(None, url="pulsar://b3:6650", admin_url="http://admin:9000", env={})
    assert flag.pulsar.admin_url == "http://admin:9000"
    env_admin = load_tool_settings(None, url="pulsar://b3:6650",
                                   env={"INFINITIC_PULSAR__ADMIN_URL": "http://a2:8080"})
    assert env_admin.pulsar.admin_url == "http://a2:8080"
    config = tmp_path / "worker.yaml"
    config.write_text("pulsar:\n  url: pulsar://b4:6650\n  admin_url: http://a4:8080\n")
    assert load_tool_settings(str(config), env={}).pulsar.admin_url == "http://a4:8080"
    config.write_text("pulsar:\n  url: pulsar://b5:6650\n  admin_url: null\n")
    assert load_tool_settings(str(config), env={}).pulsar.admin_url is None
    config.write_text("pulsar:\n  url: pulsar://b6:6650\n")
    assert load_tool_settings(str(config), env={}).pulsar.admin_url == "http://b6:8080"
    assert load_tool_settings(None, env={}).pulsar.admin_url == "http://127.0.0.1:8080"


def test_check_says_why_the_broker_is_unreachable_without_native_log_noise(
        tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(f"pulsar:\n  url: {UNREACHABLE}\n  admin_url: null\n"
                      "services:\n  - class: examples.demo:InvoiceService\n")
    out = run("check", "-c", str(config))
    assert out.returncode == 1, out
    assert "FAIL  broker pulsar://127.0.0.1:6999 is not reachable: Connection refused" in out.stdout
    assert "ERROR" not in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.fixture
def silent_broker() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung broker)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    done.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    server.close()


def test_a_broker_that_never_answers_is_bounded_by_connect_timeout(silent_broker: int) -> None:
    url = f"pulsar://127.0.0.1:{silent_broker}"
    admin = f"http://127.0.0.1:{silent_broker}"
    for args in (("dispatch", "Svc", "go", "--url", url, "--admin-url", admin),
                 ("dlq", "list", "Svc", "--url", url, "--admin-url", admin),
                 ("status", "--url", url, "--admin-url", admin)):
        started = time.monotonic()
        out = run(*args, "--connect-timeout", "1")
        elapsed = time.monotonic() - started
        assert out.returncode == 1, out
        line = one_line(out)  # no native log lines either
        assert f"127.0.0.1:{silent_broker}" in line, line
        # A bound, not a speed: the native client's own connection timeout is 10 s per attempt.
        assert elapsed < 9, (args, elapsed, line)


def test_check_refuses_a_service_the_worker_cannot_create(tmp_path: Path) -> None:
    """The worker builds each service class with no arguments: `check` (which does not run
    the constructor) must not say ok to a class whose constructor needs some."""
    (tmp_path / "needsargs.py").write_text(
        "from infinitic_py import task\n\nclass Svc:\n    def __init__(self, db):\n"
        "        self.db = db\n\n    @task\n    def go(self, x: int) -> int:\n        return x\n")
    config = tmp_path / "worker.yaml"
    config.write_text("services:\n  - class: needsargs:Svc\n")
    out = run("check", "-c", str(config), "--offline", cwd=tmp_path)
    assert out.returncode == 2, out
    line = one_line(out)
    assert "cannot create service 'needsargs:Svc'" in line and "'db'" in line, line


@pytest.mark.parametrize(("service", "words"), [
    ("    event_handler: true\n", "services[0].event_handler"),
    ("    retry: {ignored_exceptions: [NoSuchError]}\n",
     "services[examples.email_service:EmailService].retry.ignored_exceptions: 'NoSuchError'"),
])
def test_check_and_worker_refuse_the_same_service_settings_naming_the_key(
        tmp_path: Path, service: str, words: str) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text("pulsar: {url: 'memory://cli-keys', admin_url: null}\n"
                      "worker: {http_port: 0}\n"
                      "services:\n  - class: examples.email_service:EmailService\n" + service)
    for command in (("check", "-c", str(config), "--offline"), ("worker", "-c", str(config))):
        line = usage_line(*command)
        assert words in line, (command, line)


@pytest.mark.parametrize("args", [("dispatch", "Svc", "go", "[1]"), ("dlq", "list", "Svc"),
                                  ("dlq", "purge", "Svc", "--yes")])
def test_shell_tools_refuse_the_in_process_broker(args: tuple[str, ...]) -> None:
    """memory:// lives inside one process: a task dispatched to it from the shell went nowhere
    (exit 0 with a task id), and `dlq list` reported 0 letters of a broker it cannot see."""
    line = usage_line(*args, "--url", "memory://shell")
    assert "memory://" in line and "pulsar://" in line, line


@pytest.mark.parametrize(("flag", "value"), [("--tenant", "a b"), ("--namespace", "a/b"),
                                             ("--url", "http://x"), ("--admin-url", "x:8080")])
def test_a_bad_flag_value_is_named_by_its_flag(flag: str, value: str) -> None:
    line = usage_line("status", flag, value)
    assert f"(set by {flag})" in line, line
