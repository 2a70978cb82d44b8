"""Publishing a unit's outcome plan: every topic at once, a failure pinned to its topic.

A reply topic the broker refuses (deleted, another tenant, a namespace without auto-creation)
concerns only the tasks replying there: ``outcomes.isolate_reply_failures`` turns them into dead
letters (``reply_unpublishable``), which are published here, and the other tasks stand. A failure
of any other topic (the service topic, its retry or dead-letter topic: the broker itself) raises
its ``TransportError``: the executor then nacks the whole unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infinitic_py.producers import ProducerCache
from infinitic_py.wire import Dialect
from infinitic_py.worker import outcomes
from infinitic_py.worker.routing import Pending
from infinitic_py.worker.settings import ExecutorSettings


async def publish_plan(
    producers: ProducerCache,
    items: Sequence[Pending],
    plan: outcomes.Plan,
    dialect: Dialect[Any],
    settings: ExecutorSettings,
) -> None:
    """Publish ``plan``. The tasks whose reply topic was refused are dead-lettered: their dead
    letters are published and added to ``plan.dead`` (counted and logged with the rest), and
    ``plan.replies`` says nothing was answered to them. Raises ``TransportError`` when a topic
    other than a task's reply topic failed."""
    failures = await producers.publish_each(plan.by_topic)
    if not failures:
        return
    letters = outcomes.isolate_reply_failures(items, plan, failures, dialect,
                                              settings.worker_name)
    if letters is None:
        raise next(iter(failures.values()))
    await producers.publish(letters.by_topic)
    plan.dead.extend(letters.dead)
    # Best effort: a failure reply where the reply was refused (its own failure is ignored: the
    # dead letter holds the task, and the topic may refuse anything).
    await producers.publish_each(letters.notices)
