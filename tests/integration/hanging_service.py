"""A service whose sync handler hangs on demand (issue 14 tests): ``Item(n)`` with ``n < 0``
sleeps ``$HANG_SECONDS`` (default 40) after writing ``start <pid> <n>`` to ``$RECORD_FILE``;
others take 20 ms."""

from __future__ import annotations

import os
import time

import msgspec

from infinitic_py import task


class Item(msgspec.Struct, frozen=True):
    n: int


class Sleepy:
    @task
    def nap(self, item: Item) -> int:
        if item.n < 0:
            with open(os.environ["RECORD_FILE"], "a") as f:
                f.write(f"start {os.getpid()} {item.n}\n")
            time.sleep(float(os.environ.get("HANG_SECONDS", "40")))
        else:
            time.sleep(0.02)
        return item.n
