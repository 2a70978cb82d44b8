"""Every surface against a broker with token authentication and authorization (a private
broker of this module: ``auth_broker.py``; skipped only when there is no Java to run it).

What an operator does: a token in the environment (``INFINITIC_PULSAR__AUTH_*``), a token file
ending with a newline (what ``pulsar tokens create > file`` and a mounted Secret give), a role
with produce/consume only; and what goes wrong: a wrong, expired or missing token must be one
line naming it, within a bounded time, from the worker, the client and every tool.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infinitic_py import AsyncClient, Worker, task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.errors import DispatchFailed

from .auth_broker import (
    TOKEN_PLUGIN,
    AuthBroker,
    auth_broker_lock,
    java_available,
    make_token,
    start_auth_broker,
    stop_auth_broker,
)
from .harness import poll
from .test_client import Doubler, Job
from .test_ops import get, metric

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "infinitic_py.cli"]
EMAIL = '[{"to": "a@b", "subject": "s"}]'


@pytest.fixture(scope="module")
def auth_broker() -> Iterator[AuthBroker]:
    if not java_available():
        pytest.skip("no Java to run the auth broker (JAVA_HOME or java on PATH)")
    with auth_broker_lock():  # one session at a time per checkout: start stops a leftover
        broker = start_auth_broker()
        try:
            yield broker
        finally:
            stop_auth_broker(broker.env)


@pytest.fixture(scope="module")
def super_admin(auth_broker: AuthBroker) -> PulsarAdmin:
    return PulsarAdmin(auth_broker.admin_url, auth_token=auth_broker.super_token)


def token_options(token: str) -> dict[str, str]:
    return {"auth_plugin": TOKEN_PLUGIN, "auth_params": f"token:{token}"}


def cli_env(broker: AuthBroker, params: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INFINITIC_", "PULSAR_"))}
    env |= {"INFINITIC_PULSAR__URL": broker.service_url,
            "INFINITIC_PULSAR__ADMIN_URL": broker.admin_url, "PYTHONPATH": str(ROOT), **extra}
    if params is not None:
        env |= {"INFINITIC_PULSAR__AUTH_PLUGIN": TOKEN_PLUGIN,
                "INFINITIC_PULSAR__AUTH_PARAMS": params}
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60
            ) -> tuple[int, str, str, float]:
    started = time.monotonic()
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


class Upper:
    @task
    def up(self, text: str) -> str:
        return text.upper()


async def test_worker_and_client_with_a_token(auth_broker: AuthBroker, super_admin: PulsarAdmin,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """The worker's admin calls (limit check, backlog gauges) carry its token: they were made
    without one, so a broker with auth answered 401 (no limit check, the backlog gauges never
    polled). The client dispatches, gets results and deletes its response topic with its own."""
    options = token_options(auth_broker.super_token)
    name = f"Auth{uuid.uuid4().hex[:8]}"
    worker = Worker(auth_broker.service_url, admin_url=auth_broker.admin_url,
                    transport_options=options, http_host="127.0.0.1", http_port=0,
                    backlog_interval=0.2, connect_timeout=20)
    worker.add_service(Doubler(), name=name)
    await worker.start()
    try:
        assert worker.http_server is not None
        port = worker.http_server.port
        assert (await get(port, "/readyz"))[0] == 200
        async with AsyncClient(auth_broker.service_url, admin_url=auth_broker.admin_url,
                               transport_options=options) as client:
            ds = await client.service(Doubler, name=name).double.many(Job(i) for i in range(20))
            assert await asyncio.gather(*(d.result(timeout=30) for d in ds)) == [
                2 * i for i in range(20)]
            response_topic = client.response_topic
        left = [r.getMessage() for r in caplog.records if "response_topic_left" in r.getMessage()]
        assert not any("HTTP 401" in m or "HTTP 403" in m for m in left), left
        # (a fresh broker may take longer than the client's bounded delete: then it says so)
        assert left or response_topic not in super_admin.topics("public", "default")

        async def gauges() -> str:
            return (await get(port, "/metrics"))[1]
        text = await poll(gauges, lambda t: f'infinitic_backlog_ready_messages{{service="{name}"}}'
                          in t, 15)
        assert f'infinitic_backlog_ready_messages{{service="{name}"}}' in text
        assert metric(text, "infinitic_backlog_poll_errors_total", service=name) == 0
    finally:
        await worker.stop()


async def test_infinitic_wire_topics_are_created_with_the_worker_token(
        auth_broker: AuthBroker, super_admin: PulsarAdmin) -> None:
    """An Infinitic namespace has auto topic creation off: the worker creates its topics over
    the admin API, with its token (tokenless: HTTP 401 and the worker did not start)."""
    pytest.importorskip("fastavro", reason="the `infinitic` extra (fastavro) is not installed")
    namespace = f"inf{uuid.uuid4().hex[:8]}"
    super_admin.ensure_namespace("public", namespace)
    super_admin.post_json(f"/admin/v2/namespaces/public/{namespace}/autoTopicCreation",
                          {"allowAutoTopicCreation": False})
    worker = Worker(auth_broker.service_url, admin_url=auth_broker.admin_url,
                    transport_options=token_options(auth_broker.super_token),
                    backlog_interval=0, connect_timeout=20)
    worker.add_service(Upper(), wire="infinitic", namespace=namespace)
    await asyncio.wait_for(worker.start(), 60)
    try:
        assert f"persistent://public/{namespace}/task-executor:Upper-partition-0" in \
            super_admin.topics("public", namespace)
    finally:
        await worker.stop()


def test_tools_with_a_token_file(auth_broker: AuthBroker, tmp_path: Path) -> None:
    """check (--workers), status, dispatch and dlq list with the token in a file that ends with
    a newline: pulsar-client sent the newline with the token and the broker refused it (every
    request timed out), while the admin calls sent it as the raw ``file://`` URL."""
    token_file = tmp_path / "token"
    token_file.write_text(auth_broker.super_token + "\n")
    config = tmp_path / "worker.yaml"
    config.write_text("services:\n  - class: examples.email_service:EmailService\n")
    env = cli_env(auth_broker, f"file://{token_file}")
    for args in (["check", "-c", str(config), "--workers", "2"],
                 ["status"], ["dispatch", "EmailService", "send", EMAIL],
                 ["dlq", "list", "EmailService"]):
        code, out, err, _ = run_cli(args, env)
        assert code == 0, (args, out, err)


@pytest.mark.parametrize("kind", ["wrong", "expired", "missing"])
def test_refused_credentials_are_one_line_at_once(auth_broker: AuthBroker, tmp_path: Path,
                                                  kind: str) -> None:
    """A wrong, expired or missing token: each tool and the worker exit with one line naming
    the token (or its absence), not after pulsar-client's timeouts ("not reachable ... Timeout",
    "check --url")."""
    params = {"wrong": f"token:{make_token(b'k' * 32, 'admin')}",
              "expired": f"token:{auth_broker.token('admin', expires_at=time.time() - 60)}",
              "missing": None}[kind]
    expected = {"wrong": "refused the token", "expired": "expired at",
                "missing": "requires authentication"}[kind]
    config = tmp_path / "worker.yaml"
    config.write_text("worker: {http_port: 0}\npulsar: {connect_timeout_seconds: 60}\n"
                      "services:\n  - class: examples.email_service:EmailService\n")
    env = cli_env(auth_broker, params)
    for args in (["worker", "-c", str(config)], ["check", "-c", str(config)], ["status"],
                 ["dispatch", "EmailService", "send", EMAIL], ["dlq", "list", "EmailService"]):
        code, out, err, took = run_cli(args, env)
        said = (out if args[0] == "check" else err).strip().splitlines()
        assert code in (1, 2), (args, out, err)
        assert expected in said[-1], (args, out, err)
        assert "Traceback" not in err and took < 15, (args, took, err)


async def test_client_dispatch_with_a_refused_token_says_so(auth_broker: AuthBroker) -> None:
    """The client's DispatchFailed names the refused token, not pulsar-client's 'Timeout'."""
    options = {**token_options(make_token(b"k" * 32, "admin")), "operation_timeout_seconds": 2}
    async with AsyncClient(auth_broker.service_url, admin_url=auth_broker.admin_url,
                           transport_options=options, results=False) as client:
        with pytest.raises(DispatchFailed, match="refused the token"):
            await client.service("EmailService").send.many([{"to": "a@b", "subject": "s"}])


def test_a_produce_consume_role_runs_everything_but_admin_checks(
        auth_broker: AuthBroker, super_admin: PulsarAdmin, tmp_path: Path) -> None:
    """A role allowed to produce and consume in the namespace, not to administer it: the
    tools and a dispatch work; what needs namespace-admin rights degrades to a warning."""
    super_admin.post_json("/admin/v2/namespaces/public/default/permissions/app",
                          ["produce", "consume"])
    config = tmp_path / "worker.yaml"
    config.write_text("services:\n  - class: examples.email_service:EmailService\n")
    env = cli_env(auth_broker, f"token:{auth_broker.token('app')}")
    for args in (["status"], ["dispatch", "EmailService", "send", EMAIL],
                 ["dlq", "list", "EmailService"], ["check", "-c", str(config)]):
        code, out, err, _ = run_cli(args, env)
        assert code == 0, (args, out, err)



def test_a_role_without_rights_is_one_line_naming_the_grant(auth_broker: AuthBroker,
                                                            tmp_path: Path) -> None:
    """A valid token whose role may not use the namespace: pulsar-client's AuthorizationError
    was retried by the worker for its whole connect timeout and then called 'not reachable',
    and the tools said 'check --url' / 'check --admin-url'."""
    config = tmp_path / "worker.yaml"
    config.write_text("worker: {http_port: 0}\npulsar: {connect_timeout_seconds: 60}\n"
                      "services:\n  - class: examples.email_service:EmailService\n")
    env = cli_env(auth_broker, f"token:{auth_broker.token('nobody')}")
    for args in (["worker", "-c", str(config)], ["check", "-c", str(config)], ["status"],
                 ["dispatch", "EmailService", "send", EMAIL], ["dlq", "list", "EmailService"]):
        code, out, err, took = run_cli(args, env)
        said = (out if args[0] == "check" else err).strip().splitlines()
        assert code in (1, 2), (args, out, err)
        assert "grant-permission public/default --role nobody" in said[-1], (args, out, err)
        assert "Traceback" not in err and took < 15, (args, took, err)


async def test_infinitic_topics_of_a_role_that_may_not_create_them(
        auth_broker: AuthBroker, super_admin: PulsarAdmin) -> None:
    """A produce/consume role is refused the topic-creation PUT even for an existing topic:
    the worker failed although an admin had created them; a missing one is named with the
    command that creates it."""
    pytest.importorskip("fastavro", reason="the `infinitic` extra (fastavro) is not installed")
    namespace = f"inf{uuid.uuid4().hex[:8]}"
    super_admin.ensure_namespace("public", namespace)
    super_admin.post_json(f"/admin/v2/namespaces/public/{namespace}/autoTopicCreation",
                          {"allowAutoTopicCreation": False})
    super_admin.post_json(f"/admin/v2/namespaces/public/{namespace}/permissions/app",
                          ["produce", "consume"])

    def worker() -> Worker:
        w = Worker(auth_broker.service_url, admin_url=auth_broker.admin_url,
                   transport_options=token_options(auth_broker.token("app")),
                   backlog_interval=0, connect_timeout=20)
        w.add_service(Upper(), wire="infinitic", namespace=namespace)
        return w

    from infinitic_py.admin import PulsarAdminError
    with pytest.raises(PulsarAdminError, match="create-partitioned-topic persistent://"):
        await asyncio.wait_for(worker().start(), 30)
    from infinitic_py.wire.dialects import make_dialect

    for topic, partitions in make_dialect("infinitic", "public", namespace).topics(
            "Upper").items():
        super_admin.ensure_topic(topic, partitions)
    started = worker()
    await asyncio.wait_for(started.start(), 60)
    await started.stop()


@pytest.mark.parametrize("results", [True, False])
async def test_client_of_a_role_without_rights_names_the_grant(auth_broker: AuthBroker,
                                                               results: bool) -> None:
    options = {**token_options(auth_broker.token("nobody")), "operation_timeout_seconds": 5}
    async with AsyncClient(auth_broker.service_url, admin_url=auth_broker.admin_url,
                           transport_options=options, results=results) as client:
        with pytest.raises(DispatchFailed, match="grant-permission public/default --role nobody"):
            await client.service("EmailService").send.many([{"to": "a@b", "subject": "s"}])


async def test_a_worker_without_admin_url_names_its_expired_token(auth_broker: AuthBroker) -> None:
    from infinitic_py.errors import ConfigError

    expired = auth_broker.token("admin", expires_at=time.time() - 5)
    worker = Worker(auth_broker.service_url, transport_options=token_options(expired),
                    connect_timeout=60)
    worker.add_service(Upper())
    started = time.monotonic()
    with pytest.raises(ConfigError, match="expired at"):
        await worker.start()
    assert time.monotonic() - started < 10
