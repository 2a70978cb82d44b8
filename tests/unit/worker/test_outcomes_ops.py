"""Outcomes, issue 16: retries and dead letters carry the trace properties of the message they
come from (replies do not); each dead letter knows its method (the metric's label)."""

from __future__ import annotations

from infinitic_py.errors import DecodeError
from infinitic_py.retry import NO_RETRY, RetryPolicy
from infinitic_py.transport.base import ReceivedMessage
from infinitic_py.wire import Undecodable
from infinitic_py.wire import native as wire
from infinitic_py.worker.outcomes import Failed, plan_outcomes, plan_rejection
from infinitic_py.worker.routing import Rejection

from .parts import REPLIES, message, routed

DIALECT = wire.NativeDialect()
DLQ = "persistent://public/default/task-executor-dlq:Jobs"
TOPIC = "persistent://public/default/task-executor:Jobs"
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
         "tracestate": "k=v"}


def traced(msg: ReceivedMessage) -> ReceivedMessage:
    return ReceivedMessage(msg.data, {**msg.properties, **TRACE, "other": "x"}, 0, msg.topic,
                           None)


def test_a_retry_keeps_the_trace() -> None:
    policy = RetryPolicy(maximum_retries=2, minimum_seconds=1, random_factor=0)
    plan = plan_outcomes(routed(traced(message("a", meta={"batchKey": "k"}))),
                         [Failed(RuntimeError("boom"))], policy, DIALECT, "w")
    (retry,) = plan.by_topic[TOPIC]
    assert {k: retry.properties[k] for k in TRACE} == TRACE
    assert retry.properties["batchKey"] == "k" and "other" not in retry.properties


def test_a_dead_letter_keeps_the_trace_and_its_method_a_reply_does_not() -> None:
    plan = plan_outcomes(routed(traced(message("a", reply_to=REPLIES))),
                         [Failed(ValueError("x"))], NO_RETRY, DIALECT, "w")
    (letter,) = plan.by_topic[DLQ]
    assert {k: letter.properties[k] for k in TRACE} == TRACE
    assert letter.properties["reason"] == "retries_exhausted"
    (reply,) = plan.by_topic[REPLIES]
    assert not set(TRACE) & set(reply.properties)
    assert [(d.method, d.reason) for d in plan.dead] == [("double", "retries_exhausted")]


def test_no_trace_no_change() -> None:
    plan = plan_outcomes(routed(message("a")), [Failed(ValueError("x"))], NO_RETRY, DIALECT,
                         "w")
    (letter,) = plan.by_topic[DLQ]
    assert set(letter.properties) == {"reason", "taskId", "errorType"}


def test_rejections_keep_the_trace_and_name_their_method() -> None:
    msg = traced(message("u", "nope"))
    plan = plan_rejection(Rejection(msg, "unknown_method", DecodeError("no"),
                                    wire.decode_execute(msg.data)), DIALECT, "Jobs", "w")
    assert {k: plan.by_topic[DLQ][0].properties[k] for k in TRACE} == TRACE
    assert [d.method for d in plan.dead] == ["nope"]
    garbage = ReceivedMessage(b"\xc1", {"method": "double", **TRACE}, 0, "topic", None)
    decoded = DIALECT.decode(garbage)
    assert isinstance(decoded, Undecodable)
    plan = plan_rejection(Rejection(garbage, "undecodable", decoded.error, None), DIALECT,
                          "Jobs", "w")
    assert [d.method for d in plan.dead] == ["double"]
    assert {k: plan.by_topic[DLQ][0].properties[k] for k in TRACE} == TRACE
    bare = ReceivedMessage(b"\xc1", {}, 0, "topic", None)
    plan = plan_rejection(Rejection(bare, "undecodable", decoded.error, None), DIALECT,
                          "Jobs", "w")
    assert [d.method for d in plan.dead] == [""]
