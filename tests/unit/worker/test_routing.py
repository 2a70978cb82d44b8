"""Routing: one path for every message; a named route or a rejection with its reason."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.errors import DecodeError
from infinitic_py.transport.base import ReceivedMessage
from infinitic_py.wire import native as wire
from infinitic_py.wire.native import NativeDialect
from infinitic_py.worker.routing import Pending, Rejection, Router

from .parts import REPLIES, Job, definition, message


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


def _general(router: Router) -> Router:
    router._plain = None  # every message the general way
    return router


def _seen(routed: list[Pending], rejected: list[Rejection]) -> tuple[object, ...]:
    return ([(p.msg, p.task.task_id, p.args, p.key, p.route.name, p.group) for p in routed],
            [(r.msg, r.reason, str(r.error), r.task.task_id if r.task else None,
              r.task.reply_to if r.task else None) for r in rejected])


def test_the_native_hot_path_decodes_only_plainly_valid_tasks() -> None:
    router = Router(definition(), NativeDialect())
    assert router._plain is not None  # the native dialect has one
    (plain,), _ = router.route_many([message("p")])
    assert isinstance(plain.task, wire.ExecuteTask)
    assert type(plain.task) is not wire.ExecuteTask  # the checked subclass
    assert wire.encode(plain.task) == message("p").data  # same fields, same order
    (first,), _ = router.route_many([message("r", reply_to=REPLIES)])
    (again,), _ = router.route_many([message("r", reply_to=REPLIES)])
    assert type(first.task) is wire.ExecuteTask  # a reply topic not seen yet: checked first
    assert type(again.task) is type(plain.task)  # seen valid: the hot path


_task_ids = st.sampled_from(["a", "b", "", "x" * 257])
_envelopes = st.builds(
    lambda task_id, service, method, args, meta, retry, reply_to, priority, tags: wire.encode(
        wire.ExecuteTask(task_id=task_id, service=service, method=method, args=args, meta=meta,
                         retry_index=retry[0], retry_sequence=retry[1], reply_to=reply_to,
                         priority=priority, tags=tags)),
    _task_ids, st.sampled_from(["Jobs", "Other"]), st.sampled_from(["double", "one", "", "nope"]),
    st.sampled_from([wire.encode_value((Job(1),)), wire.encode_value(("no job",)),
                     wire.encode_value(())]),
    st.sampled_from([{}, {"batchKey": "k"}, {"batchKey": b"\x01"}, {"batchKey": 3}, {"x": 1}]),
    st.sampled_from([(0, 0), (2, 2), (-1, 0), (0, -1)]),
    st.sampled_from([None, REPLIES, "persistent://other/default/response:c",
                     "persistent://public/default/response:" + "c" * 600, "not a topic"]),
    st.sampled_from([0, 3, 4, 5, 6, 7, 9]),
    st.sampled_from([(), ("t",), ("t",) * 257]),
)


@given(st.lists(st.one_of(_envelopes, st.just(b"\xc1 garbage"), st.just(b"\x90")),
                max_size=12))
def test_the_hot_path_routes_every_run_as_the_general_path_does(data: list[bytes]) -> None:
    msgs = [ReceivedMessage(d, {}, 0, "topic", None) for d in data]
    fast = Router(definition(), NativeDialect())
    general = _general(Router(definition(), NativeDialect()))
    assert _seen(*fast.route_many(msgs)) == _seen(*general.route_many(msgs))
    assert _seen(*fast.route_many(msgs)) == _seen(*general.route_many(msgs))  # topics seen


def _deep(levels: int) -> bytes:
    """MessagePack maps nested ``levels`` deep: msgspec's decoder raises RecursionError on it
    (not a msgspec.DecodeError)."""
    return b"\x81\xa1a" * levels + b"\x01"


def test_a_message_that_breaks_the_decoder_is_rejected_alone() -> None:
    """Before: the RecursionError left route_many, the receive loop gave back (nacked) the whole
    run, the good messages with it, and the same happened at every redelivery."""
    deep_meta = (b"\x84\xa7task_id\xa4deep\xa7service\xa4Jobs\xa6method\xa6double\xa4meta"
                 + _deep(50_000))
    hostile = ReceivedMessage(deep_meta, {}, 0, "topic", None)
    routed, rejected = route(message("a"), hostile, message("b"))
    assert [p.task.task_id for p in routed] == ["a", "b"]
    assert [(r.msg, r.reason) for r in rejected] == [(hostile, "undecodable")]
    assert isinstance(rejected[0].error, RecursionError | DecodeError), rejected[0].error
