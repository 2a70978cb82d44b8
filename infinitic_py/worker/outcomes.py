"""Outcomes: what one unit's tasks became -> the messages to publish, per topic. Pure: no I/O,
no metrics; the executor publishes the plan, counts it, logs it, then acks.

Per task (DESIGN §1, §3.4-5): completed -> the dialect's completion messages (a reply if someone
waits); failed -> the retry policy decides: a retry (the next attempt, delayed), or failed for
good (failure reply + dead letter). An output that cannot be encoded fails its task.

Publishing is per topic (``ProducerCache.publish_each``): when only reply topics of some tasks
failed (the broker refuses them), ``isolate_reply_failures`` makes those tasks' outcome a dead
letter (``reply_unpublishable``) and the others stand; a failure of any other topic (the
service topic, its retry or dead-letter topic: the broker itself) nacks the whole unit.

Retries and dead letters keep the trace properties (``tracing.carried``) of the message they come
from, whatever the dialect: a retried or replayed task stays in its caller's trace.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import msgspec

from infinitic_py.errors import DecodeError
from infinitic_py.retry import RetryPolicy
from infinitic_py.topics import unpartitioned
from infinitic_py.tracing import carried
from infinitic_py.transport.base import OutgoingMessage, ReceivedMessage
from infinitic_py.wire import Dialect, Publish
from infinitic_py.worker.routing import Pending, Rejection


@dataclass(frozen=True, slots=True)
class Completed:
    output: Any


@dataclass(frozen=True, slots=True)
class Failed:
    error: BaseException
    trace: str | None = None


Outcome = Completed | Failed
COMPLETED_NONE = Completed(None)


@dataclass(frozen=True, slots=True)
class Retry:
    task: Any
    error: BaseException
    delay: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    task_id: str | None
    method: str  # empty for a message that did not decode
    reason: str
    error: BaseException
    retry_index: int


@dataclass(slots=True)
class Plan:
    """The messages a unit's outcomes publish, and what they tell the ledger and the metrics."""

    by_topic: dict[str, list[OutgoingMessage]] = field(default_factory=dict)
    # One entry per task: the replies it sent (empty: none), None if it was retried. None for
    # the whole plan when nothing was published at all.
    replies: list[Sequence[Publish] | None] | None = None
    completed: int = 0
    failed: list[str] = field(default_factory=list)  # error type of each failed attempt
    retries: list[Retry] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    dead_lettered: set[int] = field(default_factory=set)  # indexes of the items dead-lettered
    # Best effort, after the rest: the failure replies of tasks whose reply was refused (a reply
    # too large: the smaller failure reaches the client that awaits it; else refused again).
    notices: dict[str, list[OutgoingMessage]] = field(default_factory=dict)

    def add(self, publishes: Sequence[Publish]) -> None:
        by_topic = self.by_topic
        for p in publishes:
            msgs = by_topic.get(p.topic)
            if msgs is None:
                by_topic[p.topic] = [p.message]
            else:
                msgs.append(p.message)


def started(items: Sequence[Pending], dialect: Dialect[Any]) -> Plan:
    """What a dialect publishes when a unit's tasks start running (usually nothing)."""
    plan = Plan()
    if not dialect.announces_start:
        return plan
    for p in items:
        plan.add(dialect.started(p.task))
    return plan


_task_of = attrgetter("task")


def plan_outcomes(
    items: Sequence[Pending],
    outcomes: Sequence[Outcome],
    policy: RetryPolicy,
    dialect: Dialect[Any],
    worker: str,
) -> Plan:
    """One outcome per item, in order."""
    if set(map(type, outcomes)) == {Completed}:  # C-level passes: the hot path
        silent = getattr(dialect, "all_complete_silently", None)
        if (silent(map(_task_of, items)) if silent is not None
                else all(map(dialect.completes_silently, map(_task_of, items)))):
            return Plan(completed=len(items))  # nothing to publish
    plan = Plan()
    replies: list[Sequence[Publish] | None] = []
    for p, outcome in zip(items, outcomes, strict=True):
        task = p.task
        if type(outcome) is Completed:
            try:
                sent = dialect.completed(task, outcome.output, worker)
            except Exception as exc:  # an output the wire cannot carry (an unsupported type,
                # an int over 64 bits, a lone surrogate, a cycle...) fails this task alone
                outcome = Failed(exc, traceback.format_exc())
            else:
                plan.completed += 1
                if sent:
                    plan.add(sent)
                replies.append([r for r in sent if r.reply] if sent else ())
                continue
        assert isinstance(outcome, Failed)
        error = outcome.error
        plan.failed.append(type(error).__name__)
        undecodable = isinstance(error, DecodeError)
        delay = None if undecodable else policy.next_delay(task.retry_index, type(error))
        if delay is not None:
            plan.add(_carry(keeping_key(dialect.retried(task, error, outcome.trace, delay,
                                                        worker), p.msg), p.msg.properties))
            plan.retries.append(Retry(task, error, delay))
            replies.append(None)
            continue
        reason = ("retries_exhausted" if policy.is_retryable(type(error)) and not undecodable
                  else "not_retryable")
        sent = dialect.failed(task, error, outcome.trace, reason, p.msg.data, worker)
        plan.add(_carry(sent, p.msg.properties))
        plan.dead.append(DeadLetter(task.task_id, task.method, reason, error, task.retry_index))
        plan.dead_lettered.add(len(replies))
        replies.append([r for r in sent if r.reply])
    if plan.by_topic:
        plan.replies = replies
    return plan


REPLY_UNPUBLISHABLE = "reply_unpublishable"  # the dead letter's reason


class ReplyUnpublishable(Exception):
    """The broker refused the task's reply topic: the error recorded in its dead letter."""


def isolate_reply_failures(
    items: Sequence[Pending],
    plan: Plan,
    failures: Mapping[str, BaseException],
    dialect: Dialect[Any],
    worker: str,
) -> Plan | None:
    """After ``plan`` was published with ``failures`` (topic -> error): None when a topic that is
    no task's reply topic failed, or a reply topic failed in a way that may pass (a timeout, the
    broker away: ``TransportError.refused`` is False): the unit must be nacked. Else the dead
    letters of the tasks whose reply could not be published (already retried or dead-lettered
    ones keep their outcome), and ``plan.replies`` updated: nothing was answered to them (a
    copy must not be answered from memory)."""
    replies_to = {p.task.reply_to for p in items if p.task.reply_to}
    if any(topic not in replies_to or not getattr(error, "refused", False)
           for topic, error in failures.items()):
        return None  # the broker itself failed (or may take them later): nack, run again
    letters = Plan()
    replies = plan.replies
    for index, p in enumerate(items):
        task = p.task
        failure = failures.get(task.reply_to) if task.reply_to else None
        if failure is None:
            continue
        if replies is not None and replies[index] is not None:
            replies[index] = ()
        if (replies is not None and replies[index] is None) or index in plan.dead_lettered:
            continue  # its outcome (the retry, the dead letter) is published
        error = ReplyUnpublishable(f"the broker refused reply topic {task.reply_to}: {failure}")
        publishes = dialect.failed(task, error, None, REPLY_UNPUBLISHABLE, p.msg.data, worker)
        letters.add(_carry([r for r in publishes if not r.reply], p.msg.properties))
        for r in publishes:
            if r.reply:
                letters.notices.setdefault(r.topic, []).append(r.message)
        letters.dead.append(DeadLetter(task.task_id, task.method, REPLY_UNPUBLISHABLE, error,
                                       task.retry_index))
    return letters


def keeping_key(publishes: Sequence[Publish], msg: ReceivedMessage) -> Sequence[Publish]:
    """A retry republished to the topic its message came from keeps the key that message came
    with: a client's ``key_spread`` sub-key (``"<key>#<i>"``, infinitic_py/keys.py) is not in
    the task, and a retry under the bare batch key would move to another worker of a Key_Shared
    subscription."""
    key = msg.partition_key
    if key is None:
        return publishes
    home = unpartitioned(msg.topic)
    return [msgspec.structs.replace(p, message=msgspec.structs.replace(p.message, partition_key=key))
            if p.topic == home and p.message.partition_key != key else p for p in publishes]


def plan_rejection(rejection: Rejection, dialect: Dialect[Any], service: str,
                   worker: str) -> Plan:
    """A message that can never run: its dead letter (and a failure reply if it decoded and
    someone waits)."""
    plan = Plan()
    task = rejection.task
    if task is None:
        properties = rejection.msg.properties
        plan.add(_carry(dialect.undecodable(rejection.msg, rejection.error, service, worker),
                        properties))
        plan.dead.append(DeadLetter(properties.get("taskId"), properties.get("method", ""),
                                    rejection.reason, rejection.error, 0))
        return plan
    plan.add(_carry(dialect.failed(task, rejection.error, None, rejection.reason,
                                   rejection.msg.data, worker), rejection.msg.properties))
    plan.dead.append(DeadLetter(task.task_id, task.method, rejection.reason, rejection.error,
                                task.retry_index))
    return plan


def _carry(publishes: Sequence[Publish], received: Mapping[str, str]) -> Sequence[Publish]:
    """``publishes`` with the trace properties of the ``received`` message added to each one
    that is not a reply (a retry, a dead letter, an event): the one place a trace is carried."""
    trace = carried(received)
    if not trace:
        return publishes
    return [p if p.reply else msgspec.structs.replace(p, message=msgspec.structs.replace(
        p.message, properties={**trace, **p.message.properties})) for p in publishes]
