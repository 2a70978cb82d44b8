"""A service of large messages for the worker-memory test (issue 14, 4)."""

from __future__ import annotations

import time

import msgspec

from infinitic_py import task


class Blob(msgspec.Struct, frozen=True):
    n: int
    data: bytes


class Eater:
    @task
    def eat(self, blob: Blob) -> int:
        return len(blob.data)

    @eat.batch(max_messages=100, max_seconds=0.3)
    def eat_batch(self, blobs: dict[str, Blob]) -> dict[str, int]:
        time.sleep(0.5)  # slower than the broker delivers: a backlog builds up
        return {t: len(b.data) for t, b in blobs.items()}
