"""A batched service for fleet fault tests that returns a result per task and records each run.

A worker process (the CLI creates ``EchoRecorder()``) appends one line per batch to
``$RECORD_FILE``: ``<who> <batch keys> <n,n,...> <start time>`` (``who`` is ``$FLEET_WORKER`` or the pid).
``$ECHO_DELAY`` (seconds, default 0.05) is how long each batch runs, so that batches are in flight
when a worker is signalled.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import msgspec

from infinitic_py import get_context, task


class Num(msgspec.Struct, frozen=True):
    n: int


class EchoRecorder:
    def __init__(self) -> None:
        self.who = os.environ.get("FLEET_WORKER") or str(os.getpid())
        self.delay = float(os.environ.get("ECHO_DELAY", "0.05"))

    @task
    def echo(self, item: Num) -> int:
        return item.n

    @echo.batch(max_messages=50, max_seconds=0.5)
    def echo_batch(self, items: dict[str, Num]) -> dict[str, int]:
        began = time.time()
        time.sleep(self.delay)
        keys = {get_context(t).batch_key or "" for t in items}
        with open(os.environ["RECORD_FILE"], "a") as f:
            f.write(f"{self.who} {','.join(sorted(str(k) for k in keys))} "
                    f"{','.join(str(it.n) for it in items.values())} {began:.3f}\n")
        return {t: 2 * it.n for t, it in items.items()}


class Run(NamedTuple):
    """One recorded batch: the worker, its batch keys, its task numbers, when it began."""

    who: str
    keys: frozenset[str]
    ns: tuple[int, ...]
    began: float


def read_runs(path: str | os.PathLike[str]) -> list[Run]:
    """The batches recorded in ``path`` (complete lines only)."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) == 4 and parts[2]:
            out.append(Run(parts[0], frozenset(parts[1].split(",")),
                           tuple(int(n) for n in parts[2].split(",")), float(parts[3])))
    return out
