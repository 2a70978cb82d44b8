"""Cyclic-GC settings for a process that runs a worker.

A worker allocates a few container objects per task (the decoded arguments, the task's meta
dict) and holds thousands of tasks at a time. With Python's default generation-0 threshold (700
allocations) the collector runs every ~150 tasks and, every few thousand, walks the whole heap:
about a third of the executor's own CPU per task in ``benchmarks/executor_local.py``. The worker
daemon (``infinitic-py worker``) therefore, once its services are imported:

- moves everything alive at that point (modules, classes, the services) out of the collector's
  reach with ``gc.freeze()``: they live as long as the process, and a full collection no longer
  walks them;
- raises the generation-0 threshold (``worker.gc_gen0_threshold``, 10,000 by default): the
  per-task objects form no cycles, so collecting them rarely costs nothing but a little memory.

Only the daemon does this: a ``Worker`` embedded in another program leaves the process's GC
settings to that program (which may call :func:`tune_gc_for_worker` itself).
"""

from __future__ import annotations

import gc

DEFAULT_GEN0_THRESHOLD = 10_000


def tune_gc_for_worker(gen0_threshold: int = DEFAULT_GEN0_THRESHOLD) -> tuple[int, int, int]:
    """Freeze what is alive now and set the generation-0 threshold (``0`` keeps the current
    thresholds, and only freezes). Returns the previous thresholds."""
    if gen0_threshold < 0:
        raise ValueError(f"gen0_threshold must be >= 0, got {gen0_threshold}")
    previous = gc.get_threshold()
    gc.collect()  # what is garbage now should not be frozen
    gc.freeze()
    if gen0_threshold:
        gc.set_threshold(gen0_threshold, previous[1], previous[2])
    return previous


__all__ = ["DEFAULT_GEN0_THRESHOLD", "tune_gc_for_worker"]
