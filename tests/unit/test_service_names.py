"""A service name must be able to name the service's topics. An empty one, one with '/', a
control character, a priority band's suffix (':high' / ':low': another service's band topic, whose
tasks the worker would dead-letter as "another service") or a partition's suffix was accepted:
the client dispatched to 'task-executor:' or timed out after 30 s on 'task-executor:a/b' (the CLI
then said "check --url"), a worker registered 'Email:high'. Each is now one line at once: a
ValueError from the client, a ServiceDefinitionError from the worker or @service, exit 2 from
the CLI."""

from __future__ import annotations

import socket
import uuid

import pytest

from infinitic_py import AsyncClient, ServiceDefinitionError, Worker, service, task
from infinitic_py.topics import check_service_name

from .test_cli_failures import UNREACHABLE, one_line, run


class Email:
    @task
    def send(self, to: str) -> bool:
        return True


BAD = [
    ("", "it is empty"),
    ("  ", "it is empty"),
    ("a/b", "'/' separates"),
    ("Email\nx", "control character"),
    ("Email:high", "priority band's topic of service 'Email'"),
    ("Email:low", "priority band's topic of service 'Email'"),
    ("Email-partition-0", "'-partition-N'"),
]
GOOD = ["Email", "com.example.EmailService", "Email:v2", "billing_emails", "Émail", ":high"]


@pytest.mark.parametrize(("name", "words"), BAD)
def test_a_name_that_cannot_name_topics_is_refused_with_why(name: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as info:
        check_service_name(name)
    assert "\n" not in str(info.value).replace(repr(name), "")


@pytest.mark.parametrize("name", GOOD)
def test_usual_names_pass(name: str) -> None:
    assert check_service_name(name) == name


@pytest.mark.parametrize(("name", "words"), BAD)
async def test_the_client_refuses_it_before_anything_is_sent(name: str, words: str) -> None:
    async with AsyncClient(f"memory://names-{uuid.uuid4().hex[:8]}") as client:
        with pytest.raises(ValueError, match=words):
            client.service(name)
        if name:  # name="" means the class's name, as for add_service
            with pytest.raises(ValueError, match=words):
                client.service(Email, name=name)


@pytest.mark.parametrize(("name", "words"), [b for b in BAD if b[0].strip()])
def test_the_worker_and_the_decorator_refuse_it(name: str, words: str) -> None:
    worker = Worker(f"memory://names-{uuid.uuid4().hex[:8]}")
    with pytest.raises(ServiceDefinitionError, match=words):
        worker.add_service(Email(), name=name)
    with pytest.raises(ServiceDefinitionError, match=words):
        service(name=name)(Email)


@pytest.mark.parametrize(("args", "words"), [
    (("", "send"), "invalid service name '': it is empty"),
    (("a/b", "send"), "invalid service name 'a/b'"),
    (("Email", ""), "the METHOD argument is empty"),
    (("Email", "send", "--task-id", ""), "task_id must not be empty"),
])
def test_the_cli_says_it_in_one_line_exit_2(args: tuple[str, ...], words: str) -> None:
    with socket.socket() as listening:  # dispatch first checks that the broker's port answers
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        out = run("dispatch", args[0], args[1], "[]", *args[2:],
                  "--url", f"pulsar://127.0.0.1:{port}", "--admin-url", "http://127.0.0.1:1")
    assert out.returncode == 2, out
    assert words in one_line(out)


def test_dispatch_timeout_without_wait_is_a_usage_error() -> None:
    """``--timeout`` without ``--wait`` was ignored without a word."""
    out = run("dispatch", "Email", "send", "[]", "--timeout", "3", "--url", UNREACHABLE)
    assert out.returncode == 2, out
    assert "--timeout applies to --wait" in one_line(out)
