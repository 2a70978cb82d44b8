"""Routing: one path for every message; a named route or a rejection with its reason."""

from __future__ import annotations

from infinitic_py.errors import DecodeError
from infinitic_py.transport.base import ReceivedMessage
from infinitic_py.wire import native as wire
from infinitic_py.wire.native import NativeDialect
from infinitic_py.worker.routing import Pending, Rejection, Router

from .parts import Job, definition, message


def route(*msgs: ReceivedMessage) -> tuple[list[Pending], list[Rejection]]:
    return Router(definition(), NativeDialect()).route_many(list(msgs))


def test_a_batched_task_goes_to_its_group_and_a_single_one_alone() -> None:
    (batched, single), rejected = route(message("a", "double", meta={"batchKey": "k"}),
                                        message("b", "one"))
    assert rejected == []
    assert batched.route.batched and batched.route.limits is not None
    assert batched.route.limits.max_messages == 3
    assert batched.group == ("double", "k") and batched.args == (Job(1),)
    assert not single.route.batched and single.group == ("one", None)


def test_without_batch_key_every_task_of_a_method_shares_one_group_object() -> None:
    (a, b), _ = route(message("a"), message("b"))
    assert a.group == ("double", None) and a.group is b.group  # built once per method


def test_attempt_keys_tell_retries_apart() -> None:
    (first, retry), _ = route(message("a"), message("a", retry_sequence=2))
    assert first.key == "a" and retry.key == ("a", 2)


def test_rejections_carry_their_reason_and_keep_the_order_of_the_run() -> None:
    garbage = ReceivedMessage(b"\xc1 not msgpack", {}, 0, "topic", None)
    routed, rejected = route(
        garbage, message("u", "nope"), message("x", "double", args=("not a job",)),
        message("ok"))
    assert [p.task.task_id for p in routed] == ["ok"]
    assert [r.reason for r in rejected] == ["undecodable", "unknown_method", "not_retryable"]
    assert rejected[0].task is None and rejected[1].task.task_id == "u"
    assert isinstance(rejected[1].error, DecodeError)
    assert "no task method 'nope'" in str(rejected[1].error)
    assert "do not match its signature" in str(rejected[2].error)


def test_an_envelope_the_worker_may_not_act_on_is_rejected_alone() -> None:
    other_service = wire.ExecuteTask(task_id="o", service="Other", method="double",
                                     args=wire.encode_value((Job(1),)))
    bad_reply = "persistent://elsewhere/default/response:c1"
    routed, rejected = route(
        message("good"),
        ReceivedMessage(wire.encode(other_service), {}, 0, "topic", None),
        message("negative", retry_index=-1),
        message("refused", reply_to=bad_reply),
        message("good2", reply_to="persistent://public/default/response:c1"),
    )
    assert [p.task.task_id for p in routed] == ["good", "good2"]
    assert [(r.task.task_id, r.reason) for r in rejected] == [
        ("o", "invalid_envelope"), ("negative", "invalid_envelope"),
        ("refused", "invalid_envelope")]
    assert "Other" in str(rejected[0].error) and "retry_index" in str(rejected[1].error)
    assert isinstance(rejected[2].error, DecodeError) and bad_reply in str(rejected[2].error)
    assert rejected[2].task.reply_to is None  # never answered where the broker would refuse
    assert rejected[1].task.reply_to is None and rejected[0].task.service == "Jobs"  # its letter: our dead-letter topic
