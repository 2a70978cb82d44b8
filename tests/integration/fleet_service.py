"""A batched service for fleet tests: records which worker ran each batch and the batch keys in it.

In-process workers pass ``who`` and a ``sink`` list; a worker process (the CLI creates ``cls()``)
appends ``<who> <key,key,...> <n,n,...>`` lines to ``$RECORD_FILE`` (``who`` is
``$FLEET_WORKER`` or the pid).
"""

from __future__ import annotations

import os

import msgspec

from infinitic_py import get_context, task


class Item(msgspec.Struct, frozen=True):
    n: int


class Batch(msgspec.Struct, frozen=True):
    who: str
    keys: frozenset[str]
    ns: tuple[int, ...]


class FleetRecorder:
    def __init__(self, who: str | None = None, sink: list[Batch] | None = None) -> None:
        self.who = who or os.environ.get("FLEET_WORKER") or str(os.getpid())
        self.sink = sink

    @task
    def record(self, item: Item) -> None:
        return None

    @record.batch(max_messages=100, max_seconds=5.0)
    def record_batch(self, items: dict[str, Item]) -> None:
        keys = frozenset(get_context(t).batch_key or "" for t in items)
        batch = Batch(self.who, keys, tuple(it.n for it in items.values()))
        if self.sink is not None:
            self.sink.append(batch)
            return
        with open(os.environ["RECORD_FILE"], "a") as f:
            f.write(f"{batch.who} {','.join(sorted(batch.keys))} "
                    f"{','.join(map(str, batch.ns))}\n")


def read_batches(path: str | os.PathLike[str]) -> list[Batch]:
    """The batches a worker process recorded in ``path`` (complete lines only)."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[2]:
            out.append(Batch(parts[0], frozenset(parts[1].split(",")),
                             tuple(int(n) for n in parts[2].split(","))))
    return out
