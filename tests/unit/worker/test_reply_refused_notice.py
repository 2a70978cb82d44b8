"""A task whose reply the broker refused (a reply too large) is dead-lettered, and a failure
reply to the same topic is planned as a best-effort notice: the client that awaits the task is
told instead of waiting out its timeout."""

from __future__ import annotations

from infinitic_py.retry import NO_RETRY
from infinitic_py.transport.base import TransportError
from infinitic_py.wire import native as wire
from infinitic_py.worker.outcomes import Completed, isolate_reply_failures, plan_outcomes

from .parts import REPLIES, message, routed

DIALECT = wire.NativeDialect()


def test_a_refused_reply_plans_a_failure_reply_to_the_waiting_client() -> None:
    items = routed(message("big", reply_to=REPLIES))
    plan = plan_outcomes(items, [Completed("x")], NO_RETRY, DIALECT, "w")
    letters = isolate_reply_failures(
        items, plan, {REPLIES: TransportError("MessageTooBig", refused=True)}, DIALECT, "w")
    assert letters is not None and [d.task_id for d in letters.dead] == ["big"]
    (notice,) = letters.notices[REPLIES]
    reply = wire.decode_reply(notice.data)
    assert isinstance(reply, wire.TaskFailedReply)
    assert (reply.task_id, reply.error_type) == ("big", "ReplyUnpublishable")
    assert "MessageTooBig" in reply.message
    assert REPLIES not in letters.by_topic  # the notice is not part of what must be durable
