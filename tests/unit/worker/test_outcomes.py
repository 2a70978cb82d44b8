"""Outcomes: a unit's outcomes -> messages per topic (pure)."""

from __future__ import annotations

from infinitic_py.errors import DecodeError
from infinitic_py.retry import NO_RETRY, RetryPolicy
from infinitic_py.transport.base import ReceivedMessage, TransportError
from infinitic_py.wire import native as wire
from infinitic_py.worker.outcomes import (
    COMPLETED_NONE,
    REPLY_UNPUBLISHABLE,
    Completed,
    Failed,
    isolate_reply_failures,
    plan_outcomes,
)
from infinitic_py.worker.routing import Rejection

from .parts import REPLIES, message, routed

DIALECT = wire.NativeDialect()
DLQ = "persistent://public/default/task-executor-dlq:Jobs"
TOPIC = "persistent://public/default/task-executor:Jobs"


def test_completed_without_callers_publish_nothing() -> None:
    plan = plan_outcomes(routed(message("a"), message("b")), [COMPLETED_NONE] * 2, NO_RETRY,
                         DIALECT, "w")
    assert plan.by_topic == {} and plan.replies is None and plan.completed == 2


def test_one_outcome_per_task_in_order() -> None:
    items = routed(message("a", reply_to=REPLIES), message("b"), message("c", reply_to=REPLIES))
    plan = plan_outcomes(items, [Completed(1), Failed(ValueError("x")), Completed(object())],
                         NO_RETRY, DIALECT, "w")
    replies = [wire.decode_reply(m.data) for m in plan.by_topic[REPLIES]]
    assert [(type(r).__name__, r.task_id) for r in replies] == [
        ("TaskCompleted", "a"), ("TaskFailedReply", "c")]  # c's output cannot be encoded
    assert len(plan.by_topic[DLQ]) == 2
    assert plan.completed == 1 and plan.failed == ["ValueError", "TypeError"]
    assert plan.replies is not None and [len(r or ()) for r in plan.replies] == [1, 0, 1]


def test_a_retryable_failure_is_republished_delayed() -> None:
    policy = RetryPolicy(maximum_retries=2, minimum_seconds=1, maximum_seconds=1,
                         random_factor=0)
    plan = plan_outcomes(routed(message("a", meta={"batchKey": "k"})),
                         [Failed(RuntimeError("boom"))], policy, DIALECT, "w")
    (retry,) = plan.by_topic[TOPIC]
    assert retry.deliver_after == 1 and retry.partition_key == "k"
    decoded = wire.decode_execute(retry.data)
    assert (decoded.retry_index, decoded.retry_sequence) == (1, 1)
    assert plan.replies == [None] and [r.delay for r in plan.retries] == [1]


def test_decode_errors_are_never_retried() -> None:
    policy = RetryPolicy(maximum_retries=5)
    plan = plan_outcomes(routed(message("a")), [Failed(DecodeError("bad"))], policy, DIALECT,
                         "w")
    assert [d.reason for d in plan.dead] == ["not_retryable"] and not plan.retries


def test_a_rejection_is_dead_lettered() -> None:
    from infinitic_py.worker.outcomes import plan_rejection

    msg = message("u", "nope", reply_to=REPLIES)
    plan = plan_rejection(Rejection(msg, "unknown_method", DecodeError("no"),
                                    wire.decode_execute(msg.data)), DIALECT, "Jobs", "w")
    assert set(plan.by_topic) == {REPLIES, DLQ}
    assert wire.decode_dead_letter(plan.by_topic[DLQ][0].data).reason == "unknown_method"


REFUSED = "persistent://public/default/response:gone"


def test_a_refused_reply_topic_dead_letters_only_the_tasks_replying_there() -> None:
    items = routed(message("ok", reply_to=REPLIES), message("lost", reply_to=REFUSED),
                   message("quiet"))
    plan = plan_outcomes(items, [Completed(1), Completed(2), Completed(3)], NO_RETRY, DIALECT,
                         "w")
    letters = isolate_reply_failures(
        items, plan, {REFUSED: TransportError("refused", refused=True)}, DIALECT, "w")
    assert letters is not None
    assert list(letters.by_topic) == [DLQ]  # no second try at the refused topic
    (letter,) = [wire.decode_dead_letter(m.data) for m in letters.by_topic[DLQ]]
    assert (letter.task_id, letter.reason) == ("lost", REPLY_UNPUBLISHABLE)
    assert REFUSED in letter.message
    assert [d.task_id for d in letters.dead] == ["lost"]
    assert plan.replies is not None and [len(r or ()) for r in plan.replies] == [1, 0, 0]


def test_a_failure_of_any_other_topic_nacks_the_unit() -> None:
    items = routed(message("ok", reply_to=REPLIES), message("bad"))
    plan = plan_outcomes(items, [Completed(1), Failed(ValueError("x"))], NO_RETRY, DIALECT, "w")
    assert isolate_reply_failures(items, plan, {DLQ: TransportError("down")}, DIALECT,
                                  "w") is None
    assert isolate_reply_failures(items, plan, {REPLIES: TransportError("x"),
                                                TOPIC: TransportError("down")},
                                  DIALECT, "w") is None


def test_a_reply_topic_that_times_out_nacks_the_unit() -> None:
    """A reply publish that timed out (the broker away longer than the send timeout) is no
    refusal of the topic: before, its tasks were dead-lettered (reply_unpublishable) and acked,
    and their callers never answered (800 of 3,900 in a 45 s broker outage). Now the unit is
    nacked and runs again once the broker is back."""
    items = routed(message("ok", reply_to=REPLIES), message("other", reply_to=REFUSED))
    plan = plan_outcomes(items, [Completed(1), Completed(2)], NO_RETRY, DIALECT, "w")
    timeout = TransportError("pulsar: Timeout")
    assert isolate_reply_failures(items, plan, {REPLIES: timeout}, DIALECT, "w") is None
    assert isolate_reply_failures(items, plan, {REPLIES: timeout, REFUSED: TransportError(
        "x", refused=True)}, DIALECT, "w") is None


def test_a_retried_or_dead_lettered_task_keeps_its_outcome_when_its_reply_fails() -> None:
    policy = RetryPolicy(maximum_retries=2, minimum_seconds=1, maximum_seconds=1,
                         random_factor=0)
    items = routed(message("retried", reply_to=REFUSED), message("done", reply_to=REFUSED))
    plan = plan_outcomes(items, [Failed(RuntimeError("boom")), Completed(1)], policy, DIALECT,
                         "w")
    letters = isolate_reply_failures(items, plan, {REFUSED: TransportError("x", refused=True)},
                                     DIALECT, "w")
    assert letters is not None and [d.task_id for d in letters.dead] == ["done"]
    assert plan.replies == [None, ()]
    failed = routed(message("failed", reply_to=REFUSED))
    plan = plan_outcomes(failed, [Failed(ValueError("x"))], NO_RETRY, DIALECT, "w")
    letters = isolate_reply_failures(failed, plan, {REFUSED: TransportError("x", refused=True)},
                                     DIALECT, "w")
    assert letters is not None and letters.by_topic == {} and plan.replies == [()]


class _Keyed(ReceivedMessage, gc=False):
    """A received message whose partition key is its handle (as a transport reads it)."""

    def _read_partition_key(self) -> str | None:
        key: str | None = self.handle
        return key


def test_a_retry_keeps_the_key_its_message_came_with() -> None:
    # A client's key_spread sub-key is not in the task: the retry must keep it, or a Key_Shared
    # subscription moves the retry to the worker of the bare batch key.
    policy = RetryPolicy(maximum_retries=2, minimum_seconds=1, maximum_seconds=1,
                         random_factor=0)
    base = message("a", meta={"batchKey": "k"})
    for topic in (TOPIC, TOPIC + "-partition-3"):
        keyed = _Keyed(base.data, {}, 0, topic, "k#3")
        plan = plan_outcomes(routed(keyed), [Failed(RuntimeError("boom"))], policy, DIALECT, "w")
        (retry,) = plan.by_topic[TOPIC]
        assert retry.partition_key == "k#3" and retry.deliver_after == 1
    # Published elsewhere (another dialect's retry topic), a retry keeps the dialect's own key.
    elsewhere = _Keyed(base.data, {}, 0, "persistent://public/default/other", "k#3")
    plan = plan_outcomes(routed(elsewhere), [Failed(RuntimeError("boom"))], policy, DIALECT, "w")
    assert [m.partition_key for m in plan.by_topic[TOPIC]] == ["k"]


# Outputs and errors that msgspec cannot write: each fails its own task (the others of the batch
# stand), never the whole plan (that crashed the unit: the batch was nacked and every task in it
# ran again, up to max_redeliveries, then Pulsar dead-lettered them all unanswered).
class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of the user's exception is broken")


def _self_referencing() -> dict[str, object]:
    loop: dict[str, object] = {}
    loop["self"] = loop
    return loop


def test_an_output_msgspec_cannot_write_fails_that_task_alone() -> None:
    outputs = [2**70, "bad \udcff name", _self_referencing()]
    items = routed(message("ok", reply_to=REPLIES),
                   *(message(f"bad{i}", reply_to=REPLIES) for i in range(len(outputs))))
    plan = plan_outcomes(items, [Completed(1), *map(Completed, outputs)], NO_RETRY, DIALECT, "w")
    replies = {r.task_id: r for r in map(wire.decode_reply, (m.data for m in plan.by_topic[REPLIES]))}
    assert isinstance(replies["ok"], wire.TaskCompleted)
    assert [type(replies[f"bad{i}"]).__name__ for i in range(3)] == ["TaskFailedReply"] * 3
    assert plan.completed == 1
    assert plan.failed == ["OverflowError", "UnicodeEncodeError", "RecursionError"]
    assert [d.task_id for d in plan.dead] == ["bad0", "bad1", "bad2"]


def test_an_error_whose_text_msgspec_cannot_write_is_still_dead_lettered() -> None:
    errors: list[BaseException] = [OSError("cannot open /data/\udcff.csv"), _Unprintable()]
    items = routed(message("a", reply_to=REPLIES), message("b", reply_to=REPLIES))
    plan = plan_outcomes(items, [Failed(e, f"Traceback...\n{e!r}") for e in errors], NO_RETRY,
                         DIALECT, "w")
    letters = [wire.decode_dead_letter(m.data) for m in plan.by_topic[DLQ]]
    assert [(x.task_id, x.error_type) for x in letters] == [("a", "OSError"),
                                                            ("b", "_Unprintable")]
    assert "/data/" in letters[0].message and "\\udcff" in letters[0].message
    assert letters[0].traceback is not None and "\\udcff" in letters[0].traceback
    assert letters[1].message  # something readable, not an empty string
    failed = [wire.decode_reply(m.data) for m in plan.by_topic[REPLIES]]
    assert [type(r).__name__ for r in failed] == ["TaskFailedReply"] * 2


def test_an_error_echoing_a_large_input_still_fits_one_dead_letter() -> None:
    """An exception message that repeats a 3 MB input (and its traceback, which repeats it
    again): before, the dead letter was over the broker's 5 MiB message limit, its publish failed
    and the whole unit was nacked (every task of the batch ran again, until Pulsar dead-lettered
    them all). Now error texts are bounded (head and tail kept)."""
    big = "x" * 3_000_000
    error = ValueError(f"cannot parse {big} at the end")
    items = routed(message("a", reply_to=REPLIES))
    plan = plan_outcomes(items, [Failed(error, f"Traceback ...\nValueError: {error}")],
                         NO_RETRY, DIALECT, "w")
    (letter_msg,) = plan.by_topic[DLQ]
    assert len(letter_msg.data) < wire.MAX_LETTER_BYTES // 10
    letter = wire.decode_dead_letter(letter_msg.data)
    assert letter.message.startswith("cannot parse xxx") and letter.message.endswith("at the end")
    assert "characters cut" in letter.message
    assert letter.traceback is not None and letter.traceback.startswith("Traceback ...")
    (reply,) = plan.by_topic[REPLIES]
    assert len(reply.data) < 200_000


def test_a_dead_letter_too_large_for_its_task_carries_the_task_alone() -> None:
    from infinitic_py.wire.native_letters import read_letter

    task = wire.ExecuteTask(task_id="huge", service="Jobs", method="double",
                            args=wire.encode_value([{"n": 1, "pad": "p" * 5_150_000}]),
                            meta={"batchKey": "k"}, retry_index=2)
    payload = wire.encode(task)
    (letter_pub,) = DIALECT.failed(task, LookupError("gone"), "Traceback ...\n" * 5000,
                                   "retries_exhausted", payload, "w1")
    assert letter_pub.topic == DLQ
    assert letter_pub.message.data == payload  # the task's bytes: they fitted one message
    view = read_letter(letter_pub.message.data, letter_pub.message.properties, service="Jobs",
                       published_at=None)
    assert (view.reason, view.error_type, view.message, view.task_id, view.retry_index,
            view.method, view.worker, view.batch_key) == (
        "retries_exhausted", "LookupError", "gone", "huge", 2, "double", "w1", "k")
    assert view.task == task and view.failed_at > 0
