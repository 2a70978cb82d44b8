"""``status``'s DEAD column is the dead-letter subscription's backlog, which the broker counts in
*entries*; the worker batches its letters (23 letters of one failed batch read DEAD 2 on the real
broker), so the table must not pass the number off as a count of letters."""

from __future__ import annotations

from typing import Any

from infinitic_py.ops.status import build_status, render_status
from infinitic_py.topics import DLQ_SUBSCRIPTION, WORKER_SUBSCRIPTION

BASE = "persistent://public/default/"


def _status(dead_entries: int) -> Any:
    topics = [BASE + "task-executor:Email", BASE + "task-executor-dlq:Email"]
    stats: dict[str, dict[str, Any]] = {
        BASE + "task-executor:Email": {"subscriptions": {WORKER_SUBSCRIPTION: {
            "msgBacklog": 0, "msgBacklogNoDelayed": 0, "consumers": []}}},
        BASE + "task-executor-dlq:Email": {"subscriptions": {DLQ_SUBSCRIPTION: {
            "msgBacklog": dead_entries}}},
    }
    return build_status("public", "default", topics, stats)


def test_dead_letters_are_said_to_be_entries_and_dlq_list_counts_letters() -> None:
    text = render_status(_status(2))
    assert "DEAD counts dead-letter entries, not letters" in text, text
    assert "infinitic-py dlq list SERVICE" in text


def test_no_note_without_dead_letters() -> None:
    assert "entries" not in render_status(_status(0))


def test_ready_without_a_worker_is_said_to_include_delayed_tasks() -> None:
    """No worker connected: the broker has not sorted delayed tasks out (5 tasks delay=3600 and
    3 ready read msgBacklogNoDelayed 8, msgDelayed 0 on the real broker)."""
    topics = [BASE + "task-executor:Idle"]
    stats: dict[str, dict[str, Any]] = {BASE + "task-executor:Idle": {"subscriptions": {
        WORKER_SUBSCRIPTION: {"msgBacklog": 8, "msgBacklogNoDelayed": 8, "consumers": []}}}}
    text = render_status(build_status("public", "default", topics, stats))
    assert "READY of a service with no worker connected includes its delayed tasks" in text, text
    assert "includes its delayed" not in render_status(_status(0))
