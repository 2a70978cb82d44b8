"""JVM Infinitic workflows served by a Python executor (codec + pulsar-client, no product executor).

The JVM runs ``mode=external``: BenchWorkflow + BenchService's event and retry handlers
(``config/wf.yml``); it dispatches W workflows of n ``echo`` tasks once a consumer is on
``task-executor:BenchService`` and exits 0 only if every workflow returned every result right.
"""

from __future__ import annotations

from typing import Any

import pytest

from infinitic_py.admin import PulsarAdmin
from infinitic_py.wire.infinitic import envelopes as env
from tests.integration.conftest import BrokerInfo

from .conftest import StartJvm
from .namespaces import TENANT, quote
from .python_server import PythonServer

# the first JVM test of a session may build the example (cold ~/.m2: ~130 MB of downloads + kotlinc)
pytestmark = pytest.mark.timeout(1200)



def _versions(admin: PulsarAdmin, namespace: str, local: str) -> list[int]:
    body = admin.get_json(f"/admin/v2/schemas/{TENANT}/{namespace}/{quote(local)}/schemas")
    return sorted(int(v["version"]) for v in body["getSchemaResponses"])


def test_jvm_workflows_complete_with_python_served_tasks(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, admin: PulsarAdmin, interop_namespace: str
) -> None:
    runner = start_jvm("mode=external", "workflows=4", "per=25", "timeout=180")
    runner.wait_for(r"waiting for an external executor", timeout=180)
    server = PythonServer(pulsar_broker.service_url, pulsar_broker.admin_url, interop_namespace).start()
    try:
        assert runner.wait(timeout=240) == 0, runner.tail()
        assert "every result correct" in runner.output()
    finally:
        server.stop()
    assert server.error is None
    assert server.stats.tasks == 100 and server.stats.failures == 0
    assert server.stats.writer_versions == {0}
    assert sum(size for _, _, size in server.stats.batches) == 100
    assert all(method == "echo" and key is None for method, key, _ in server.stats.batches)
    # the JVM registered these schemas; Python's producers and consumer added no version
    for local in ("task-executor:BenchService", "task-events:BenchService", "task-retry:BenchService"):
        assert _versions(admin, interop_namespace, local) == [0], local


def test_python_retries_go_through_the_jvm_retry_handler(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, interop_namespace: str
) -> None:
    """The first attempt of every task fails; the retry (task-retry + deliverAfter, forwarded by
    the JVM's retry handler) succeeds, so the workflows still complete with the right results."""

    def policy(task: env.ExecuteTask, error: BaseException) -> float | None:
        return 1.0 if task.task_retry_index < 1 else None

    runner = start_jvm("mode=external", "workflows=2", "per=10", "timeout=180")
    runner.wait_for(r"waiting for an external executor", timeout=180)
    server = FirstAttemptsFail(
        pulsar_broker.service_url, pulsar_broker.admin_url, interop_namespace, retry_policy=policy
    )
    server.start()
    try:
        assert runner.wait(timeout=240) == 0, runner.tail()
    finally:
        server.stop()
    assert server.error is None
    assert server.stats.retries == 20 and server.stats.failures == 0
    assert server.stats.tasks == 40  # 20 first attempts + 20 retries
    assert server.seen_last_errors == {"builtins.ValueError"}


class FirstAttemptsFail(PythonServer):
    """Fails every first attempt (taskRetryIndex 0) with a ValueError."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen_last_errors: set[str | None] = set()

    def _serve(self, messages: list[Any]) -> None:
        tasks = [env.decode_execute_task(m.data()) for m in messages]
        for task in tasks:
            if task.last_error is not None:
                exception = task.last_error.exception
                self.seen_last_errors.add(exception.name if exception else None)
        first = [m for m, t in zip(messages, tasks, strict=True) if t.task_retry_index == 0]
        later = [m for m, t in zip(messages, tasks, strict=True) if t.task_retry_index > 0]
        if first:
            echo, self.handler = self.handler, _fail
            try:
                super()._serve(first)
            finally:
                self.handler = echo
        if later:
            super()._serve(later)


def _fail(method: str, key: bytes | None, args: dict[str, Any]) -> dict[str, Any]:
    raise ValueError("first attempts fail")


def test_a_jvm_workflow_batches_1000_tasks_by_key_on_python(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, interop_namespace: str
) -> None:
    """10 KeyedBenchWorkflows (the suite's JVM overlay) dispatch 1,000 tasks over 10 batch keys (one
    workflow of 1,000 works too but its engine state makes it ~5x slower: 147 s here)."""
    runner = start_jvm("workflows=10", "per=100", "keys=10", "timeout=300", main="bench.KeyedKt")
    runner.wait_for(r"waiting for an external executor", timeout=180)
    server = PythonServer(pulsar_broker.service_url, pulsar_broker.admin_url, interop_namespace).start()
    try:
        assert runner.wait(timeout=360) == 0, runner.tail()
        assert "every result correct" in runner.output()
    finally:
        server.stop()
    assert server.error is None and server.stats.tasks == 1000
    keys = {key for _, key, _ in server.stats.batches}
    assert keys == {f"k{i}".encode() for i in range(10)}
    per_key = {key: sum(n for _, k, n in server.stats.batches if k == key) for key in keys}
    assert set(per_key.values()) == {100}
    assert max(n for _, _, n in server.stats.batches) > 1  # batches, not singles


def test_a_python_failure_reaches_the_jvm_workflow_with_its_name_and_message(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, interop_namespace: str
) -> None:
    """No retry: TaskFailedEvent; the JVM workflow fails with Infinitic's task failure, which
    carries the Python exception's qualified name and message."""
    runner = start_jvm("mode=external", "workflows=1", "per=3", "timeout=120")
    runner.wait_for(r"waiting for an external executor", timeout=180)
    server = PythonServer(
        pulsar_broker.service_url, pulsar_broker.admin_url, interop_namespace, handler=_refuse
    ).start()
    try:
        assert runner.wait(timeout=240) == 1, runner.tail()
    finally:
        server.stop()
    assert server.error is None and server.stats.failures == 3
    output = runner.output()
    assert "builtins.PermissionError" in output, runner.tail()
    assert "refused by Python" in output


def _refuse(method: str, key: bytes | None, args: dict[str, Any]) -> dict[str, Any]:
    raise PermissionError("refused by Python")


def test_no_jvm_service_worker_python_runs_the_event_handler_role(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, admin: PulsarAdmin, interop_namespace: str
) -> None:
    """The JVM runs KeyedBenchWorkflow only (``keyed-only.yml``); Python executes BenchService
    AND turns its events into ``TaskCompleted`` on ``workflow-engine:KeyedBenchWorkflow`` (key =
    workflowId, JavaStringHash partition), as Infinitic's event handler does."""
    runner = start_jvm(
        "workflows=10", "per=20", "keys=4", "timeout=240", "file=keyed-only.yml", main="bench.KeyedKt"
    )
    runner.wait_for(r"waiting for an external executor", timeout=180)
    server = PythonServer(
        pulsar_broker.service_url, pulsar_broker.admin_url, interop_namespace, event_handler=True
    ).start()
    try:
        assert runner.wait(timeout=300) == 0, runner.tail()
        assert "every result correct" in runner.output()
    finally:
        server.stop()
    assert server.error is None and server.stats.tasks == 200
    assert len(server.handled) == 200
    assert {(o.prefix, o.entity) for o in server.handled} == {("workflow-engine", "KeyedBenchWorkflow")}
    assert _versions(admin, interop_namespace, "workflow-engine:KeyedBenchWorkflow") == [0]


def test_python_event_handler_reports_a_python_failure_to_the_jvm_workflow(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, interop_namespace: str
) -> None:
    """``RemoteTaskFailed`` written by Python: the JVM workflow fails with the Python error."""
    runner = start_jvm(
        "workflows=1", "per=2", "keys=1", "timeout=120", "file=keyed-only.yml", main="bench.KeyedKt"
    )
    runner.wait_for(r"waiting for an external executor", timeout=180)
    server = PythonServer(
        pulsar_broker.service_url, pulsar_broker.admin_url, interop_namespace, handler=_refuse,
        event_handler=True,
    ).start()  # fmt: skip
    try:
        assert runner.wait(timeout=240) == 1, runner.tail()
    finally:
        server.stop()
    assert server.error is None and server.stats.failures == 2
    assert "GenericException(name=builtins.PermissionError, message=refused by Python" in runner.output()
