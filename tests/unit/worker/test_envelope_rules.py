"""EnvelopeRules: which decoded envelopes a worker may act on (pure)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.wire import native as wire
from infinitic_py.worker.envelope_rules import EnvelopeRules

RULES = EnvelopeRules.native("Email", "acme", "prod")
GOOD_REPLY = "persistent://acme/prod/response:client-0123abcd"


def envelope(**changes: object) -> wire.ExecuteTask:
    base = wire.ExecuteTask(task_id="t1", service="Email", method="send",
                            args=wire.encode_value([1]), reply_to=GOOD_REPLY)
    return msgspec.structs.replace(base, **changes)


def test_a_good_envelope_passes_with_or_without_a_reply_topic() -> None:
    assert RULES.problem(envelope()) is None
    assert RULES.problem(envelope(reply_to=None)) is None
    assert RULES.problem(envelope()) is None  # remembered


@pytest.mark.parametrize(("changes", "word"), [
    ({"service": "Sms"}, "Sms"),
    ({"method": ""}, "method"),
    ({"task_id": ""}, "task_id"),
    ({"task_id": "x" * 257}, "task_id"),
    ({"retry_index": -1}, "retry_index"),
    ({"retry_sequence": -3}, "retry_sequence"),
    ({"reply_to": "persistent://other/prod/response:c"}, "reply_to"),
    ({"reply_to": "persistent://acme/dev/response:c"}, "reply_to"),
    ({"reply_to": "persistent://acme/prod/task-executor:Email"}, "reply_to"),
    ({"reply_to": "not a topic"}, "reply_to"),
    ({"reply_to": "persistent://acme/prod/response:a/b"}, "reply_to"),
    ({"reply_to": "persistent://acme/prod/response:"}, "reply_to"),
    ({"tags": ("t",) * 300}, "tags"),
])
def test_each_bad_field_is_named(changes: dict[str, object], word: str) -> None:
    problem = RULES.problem(envelope(**changes))
    assert problem is not None and word in problem


def test_a_bad_reply_topic_is_dropped_from_the_rejected_task_only() -> None:
    bad = envelope(reply_to="persistent://other/prod/response:c")
    assert RULES.sanitized(bad).reply_to is None
    good = envelope()
    assert RULES.sanitized(good) is good
    other = RULES.sanitized(envelope(service="Sms"))
    assert (other.service, other.reply_to) == ("Email", GOOD_REPLY)  # dead-lettered here


@given(st.text(max_size=80))
def test_any_reply_topic_outside_the_namespace_alphabet_is_refused(name: str) -> None:
    reply = f"persistent://acme/prod/response:{name}"
    allowed = name != "" and all(c.isascii() and (c.isalnum() or c in "_-=:.") for c in name)
    assert (RULES.problem(envelope(reply_to=reply)) is None) == allowed
