"""A service for worker subprocesses in crash tests: records each batch's start and end.

Lines in ``$RECORD_FILE``: ``start <pid> <batch_id> <n,n,...>`` then ``end <pid> <batch_id>``.
"""

from __future__ import annotations

import os
import time

import msgspec

from infinitic_py import get_context, task


class Item(msgspec.Struct, frozen=True):
    n: int


def _record(line: str) -> None:
    with open(os.environ["RECORD_FILE"], "a") as f:
        f.write(line + "\n")
        f.flush()


class SlowRecorder:
    @task
    def record(self, item: Item) -> int:
        return item.n

    @record.batch(max_messages=20, max_seconds=0.3)
    def record_batch(self, items: dict[str, Item]) -> dict[str, int]:
        batch_id = get_context(next(iter(items))).batch_id
        ns = ",".join(str(it.n) for it in items.values())
        _record(f"start {os.getpid()} {batch_id} {ns}")
        time.sleep(float(os.environ.get("BATCH_SLEEP", "0.5")))  # the work itself
        _record(f"end {os.getpid()} {batch_id}")
        return {t: it.n for t, it in items.items()}
