"""``get_context(task_id)`` in a single task with another id said "only available inside a task
or batch method", though the caller was in one: it names the task being executed and points to
``current_context()``."""

from __future__ import annotations

import pytest

from infinitic_py import TaskContext, current_context, get_context
from infinitic_py.context import set_task_context


def test_get_context_in_a_single_task_with_another_id_says_which_task_runs() -> None:
    context = TaskContext(task_id="t-1", service="S", method="m", batch_key=None, meta={},
                          tags=(), retry_index=0, retry_sequence=0, batch_id=None,
                          worker_name="w")
    set_task_context(context)
    try:
        assert get_context("t-1") is context and current_context() is context
        with pytest.raises(LookupError, match=r"task 'other' is not the task being executed "
                                              r"\('t-1'\): in a single task use current_context"):
            get_context("other")
    finally:
        set_task_context(None)
    with pytest.raises(LookupError, match="only available inside a task or batch method"):
        get_context("t-1")
