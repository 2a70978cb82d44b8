"""The pure parts of the operator tools: dead letters decoded, filtered and replayed; status rows
built from admin stats; times parsed."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.client_admin import ClientAdmin
from infinitic_py.ops.dlq import LetterFilter, parse_time
from infinitic_py.ops.status import build_status, render_status
from infinitic_py.priority import Band, band_service, split_band
from infinitic_py.topics import DLQ_SUBSCRIPTION, WORKER_SUBSCRIPTION
from infinitic_py.wire import native as wire
from infinitic_py.wire.native_letters import read_letter, replay_message


def _task(**changes: object) -> wire.ExecuteTask:
    task = wire.ExecuteTask(task_id="t1", service="Email", method="send",
                            args=wire.encode_value(["a@b.c"]), meta={"batchKey": "k1"},
                            tags=("x",), retry_index=3, retry_sequence=3,
                            reply_to="persistent://public/default/response:client-1",
                            emitted_at=10.0, first_emitted_at=5.0)
    return msgspec.structs.replace(task, **changes)


def _letter(task: wire.ExecuteTask, **changes: object) -> bytes:
    letter = wire.DeadLetter(reason="retries_exhausted", error_type="SmtpError", message="down",
                             traceback="Traceback...", retry_index=task.retry_index,
                             task_id=task.task_id, service=task.service, method=task.method,
                             payload=wire.encode(task), failed_at=1000.0, worker="w1")
    return wire.encode(msgspec.structs.replace(letter, **changes))


def test_a_dead_letter_decodes_with_its_task_and_batch_key() -> None:
    view = read_letter(_letter(_task()), {"traceparent": "00-abc"}, service="Email",
                       published_at=None)
    assert (view.reason, view.error_type, view.batch_key, view.method) == (
        "retries_exhausted", "SmtpError", "k1", "send")
    assert view.task is not None and view.task.task_id == "t1"
    assert view.to_json(details=True)["args"] == ["a@b.c"]


def test_a_task_moved_by_pulsars_dead_letter_policy_reads_as_max_redeliveries() -> None:
    view = read_letter(wire.encode(_task()), {}, service="Email", published_at=1234.0)
    assert view.reason == "max_redeliveries" and view.failed_at == 1234.0
    garbage = read_letter(b"\x00\x01", {"taskId": "t9"}, service="Email", published_at=None)
    assert garbage.reason == "unreadable" and garbage.task_id == "t9" and garbage.task is None
    with pytest.raises(ValueError, match="cannot be replayed"):
        replay_message(garbage)


def test_replay_is_a_new_attempt_with_the_trace_kept() -> None:
    view = read_letter(_letter(_task()), {"traceparent": "00-abc", "reason": "x"},
                       service="Email", published_at=None)
    attempt, message = replay_message(view, to_service="EmailV2", now=50.0)
    props = message.properties
    assert (attempt.service, attempt.retry_index, attempt.retry_sequence) == ("EmailV2", 0, 4)
    assert attempt.reply_to is None and attempt.emitted_at == 50.0
    assert attempt.first_emitted_at == 5.0 and attempt.meta == {"batchKey": "k1"}
    assert props["traceparent"] == "00-abc" and props["batchKey"] == "k1"
    assert "reason" not in props


def test_filters() -> None:
    view = read_letter(_letter(_task()), {}, service="Email", published_at=None)
    assert LetterFilter().matches(view) and LetterFilter().is_empty()
    assert LetterFilter(error_type="SmtpError", method="send", batch_key="k1").matches(view)
    assert not LetterFilter(error_type="ValueError").matches(view)
    assert LetterFilter(since=1000.0, until=1000.5).matches(view)
    assert not LetterFilter(since=1000.5).matches(view)


@given(st.integers(min_value=0, max_value=10_000), st.sampled_from("smhdw"))
def test_relative_times_are_that_long_ago(amount: int, unit: str) -> None:
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert parse_time(f"{amount}{unit}", now=1e9) == 1e9 - amount * seconds


def test_absolute_times() -> None:
    assert parse_time("1970-01-01T00:01:00Z") == 60.0
    assert parse_time("1970-01-01T00:01:00") == 60.0  # UTC unless it says otherwise
    assert parse_time("123.5") == 123.5
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN"])
def test_a_number_that_is_no_time_is_refused(text: str) -> None:
    """--since nan used to select nothing, silently (every comparison with nan is false)."""
    with pytest.raises(ValueError, match="not a time"):
        parse_time(text)


def test_status_rows_from_admin_stats() -> None:
    base = "persistent://public/default/"
    topics = [base + "task-executor:Email", base + "task-executor-dlq:Email",
              base + "task-executor:Ghost", base + "task-executor-dlq:Gone",
              base + "response:client-1", base + "other"]
    stats: dict[str, dict[str, Any]] = {
        base + "task-executor:Email": {"msgRateIn": 3.0, "subscriptions": {WORKER_SUBSCRIPTION: {
            "msgBacklog": 10, "msgBacklogNoDelayed": 7, "unackedMessages": 4, "type": "Shared",
            "msgRateOut": 2.5, "consumers": [
                {"consumerName": "w1", "unackedMessages": 4, "msgRateOut": 2.5}]}}},
        base + "task-executor-dlq:Email": {"subscriptions": {DLQ_SUBSCRIPTION: {"msgBacklog": 2}}},
        base + "task-executor:Ghost": {"subscriptions": {}},
        base + "task-executor-dlq:Gone": {"subscriptions": {}},
    }
    status = build_status("public", "default", topics, stats)
    rows = {s.service: s for s in status.services}
    email = rows["Email"]
    assert (email.ready, email.delayed, email.backlog, email.unacked) == (7, 3, 10, 4)
    assert (email.state, email.dead_letters, email.workers[0].name) == ("ok", 2, "w1")
    assert rows["Ghost"].state == "no worker subscription"
    assert rows["Gone"].state == "no service topic" and rows["Gone"].dead_letters is None
    assert status.response_topics == [base + "response:client-1"]
    assert status.to_json()["services"][0]["service"] == "Email"
    # The topics counted are there now: the line must not say they get deleted (left-behind
    # ones are not, their clients are gone).
    line = render_status(status).splitlines()[-1]
    assert line.startswith("1 client response topic(s)") and "deleted when" not in line, line


def test_priority_bands_fold_into_their_service() -> None:
    base = "persistent://public/default/"

    def sub(backlog: int, ready: int, unacked: int, consumers: int = 1) -> dict[str, Any]:
        return {"msgRateIn": 1.0, "subscriptions": {WORKER_SUBSCRIPTION: {
            "msgBacklog": backlog, "msgBacklogNoDelayed": ready, "unackedMessages": unacked,
            "msgRateOut": 0.5, "consumers": [{"consumerName": f"w{i}"} for i in range(consumers)]}}}

    topics = [base + "task-executor:Email", base + "task-executor:Email:high",
              base + "task-executor:Email:low", base + "task-executor:Solo:high"]
    stats = {topics[0]: sub(10, 7, 1), topics[1]: sub(5, 5, 2), topics[2]: sub(3, 1, 0),
             topics[3]: sub(4, 4, 0, consumers=0)}
    status = build_status("public", "default", topics, stats)
    assert [s.service for s in status.services] == ["Email", "Solo"]
    email, solo = status.services
    assert (email.backlog, email.ready, email.delayed, email.unacked) == (18, 13, 5, 3)
    assert (email.topic, len(email.workers), email.rate_in) == (topics[0], 1, 3.0)
    assert {k: (b.backlog, b.ready) for k, b in email.bands.items()} == {
        "normal": (10, 7), "high": (5, 5), "low": (3, 1)}
    assert status.to_json()["services"][0]["bands"]["high"]["topic"] == topics[1]
    assert (solo.topic, solo.ready, solo.state, solo.bands) == (
        topics[3], 4, "no worker connected", {})


def test_split_band_inverts_band_service() -> None:
    for band in Band:
        assert split_band(band_service("Email", band)) == ("Email", band)
    assert split_band(":high") == (":high", Band.NORMAL)


async def test_the_no_worker_warning_names_the_service_of_a_band(
        caplog: pytest.LogCaptureFixture) -> None:
    class Admin:
        def topic_stats(self, topic: str) -> dict[str, Any]:
            return {"subscriptions": {WORKER_SUBSCRIPTION: {"consumers": []}}}

    admin = ClientAdmin("http://127.0.0.1:1", {})
    admin._admin = Admin()  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="infinitic_py.client"):
        await admin.check_workers("persistent://public/default/task-executor:Email:high",
                                  "Email:high", "c1")
        await admin.check_workers("persistent://public/default/task-executor:Email",
                                  "Email", "c1")
    (record,) = [r for r in caplog.records if "client.no_worker" in r.getMessage()]
    assert "service=Email: no worker" in record.getMessage()


def test_a_letter_whose_task_breaks_the_decoder_still_reads() -> None:
    """Nesting deeper than msgspec's recursion limit raises RecursionError, not a msgspec error:
    before, one such letter (a hostile message the worker dead-lettered as undecodable) made
    ``read_letter`` raise, and `infinitic-py dlq list` could list none of the service's letters."""
    deep = b"\x81\xa1a" * 50_000 + b"\x01"
    hostile = (b"\x84\xa7task_id\xa4deep\xa7service\xa5Email\xa6method\xa4send\xa4meta" + deep)
    view = read_letter(_letter(_task(), payload=hostile, reason="undecodable"), {},
                       service="Email", published_at=None)
    assert (view.reason, view.task_id, view.task) == ("undecodable", "t1", None)
    assert view.to_json(details=True)["reason"] == "undecodable"
    raw = read_letter(hostile, {"taskId": "deep"}, service="Email", published_at=None)
    assert (raw.reason, raw.task_id) == ("unreadable", "deep")
    deep_args = _task(args=msgspec.Raw(b"\x91" * 100_000 + b"\x01"))
    assert "args" in read_letter(_letter(deep_args), {}, service="Email",
                                 published_at=None).to_json(details=True)


def test_an_infinitic_service_is_one_row_with_every_dead_letter_topic_counted() -> None:
    """A ``wire: infinitic`` service: partitioned task-executor:S (its partitions listed one by
    one), Infinitic's worker subscription, three dead-letter topics. Before: one row per
    partition, none with its workers, and DEAD counted task-executor-dlq:S only."""
    from infinitic_py.wire.dialects import status_names

    base = "persistent://public/infinitic/"
    topics = [base + f"task-executor:Bench-partition-{i}" for i in range(3)] + [
        base + "task-executor-dlq:Bench", base + "task-retry-dlq:Bench",
        base + "task-events-dlq:Bench", base + "task-events-dlq:Orphan"]
    letters = {"subscriptions": {DLQ_SUBSCRIPTION: {"msgBacklog": 2}}}
    stats: dict[str, dict[str, Any]] = {
        base + "task-executor:Bench": {"subscriptions": {"task-executor-subscription": {
            "msgBacklog": 4, "msgBacklogNoDelayed": 4, "unackedMessages": 1,
            "consumers": [{"consumerName": "jvm-1"}]}}},
        base + "task-executor-dlq:Bench": letters, base + "task-retry-dlq:Bench": letters,
        base + "task-events-dlq:Bench": letters, base + "task-events-dlq:Orphan": letters,
    }
    prefixes, subscriptions = status_names("public", "infinitic")
    assert {"task-executor-dlq:", "task-retry-dlq:", "task-events-dlq:"} <= set(prefixes)
    status = build_status("public", "infinitic", topics, stats, dlq_prefixes=prefixes,
                          worker_subscriptions=subscriptions)
    assert [s.service for s in status.services] == ["Bench", "Orphan"]
    bench, orphan = status.services
    assert (bench.topic, bench.state, bench.ready, bench.dead_letters) == (
        base + "task-executor:Bench", "ok", 4, 6)
    assert [w.name for w in bench.workers] == ["jvm-1"]
    assert (orphan.state, orphan.dead_letters) == ("no service topic", 2)
