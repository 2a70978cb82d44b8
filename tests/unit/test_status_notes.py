"""``status`` notes what the broker's counts do not say: a service with no worker connected has
its delayed tasks counted as ready (the broker sorts them out only as it dispatches)."""

from __future__ import annotations

from typing import Any

from infinitic_py.ops.status import build_status, render_status
from infinitic_py.topics import WORKER_SUBSCRIPTION

BASE = "persistent://public/default/"


def _render(ready: int, consumers: list[dict[str, Any]]) -> str:
    topics = [BASE + "task-executor:Idle"]
    stats: dict[str, dict[str, Any]] = {BASE + "task-executor:Idle": {"subscriptions": {
        WORKER_SUBSCRIPTION: {"msgBacklog": ready, "msgBacklogNoDelayed": ready,
                              "consumers": consumers}}}}
    return render_status(build_status("public", "default", topics, stats))


def test_ready_without_a_worker_is_said_to_include_delayed_tasks() -> None:
    """No worker connected: the broker has not sorted delayed tasks out (5 tasks delay=3600 and
    3 ready read msgBacklogNoDelayed 8, msgDelayed 0 on the real broker)."""
    text = _render(8, [])
    assert "READY of a service with no worker connected includes its delayed tasks" in text, text
    assert "includes its delayed" not in _render(8, [{"consumerName": "w"}])
    assert "includes its delayed" not in _render(0, [])
