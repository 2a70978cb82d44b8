"""BatchAccumulator: pure logic, fake clock, hypothesis properties from the batching contract."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from infinitic_py.worker.accumulator import Batch, BatchAccumulator, BatchLimits, FlushReason

Key = tuple[str, str | None]


class Owner:
    """The accumulator as its owner (the executor) drives it: fixed limits per group, and the
    oldest group flushed when the buffered total reaches the owner's cap."""

    def __init__(self, limits: BatchLimits, cap: int | None) -> None:
        self.acc: BatchAccumulator[Key, int] = BatchAccumulator()
        self.limits = limits
        self.cap = cap

    def add(self, key: Key, item: int, now: float) -> tuple[Batch[Key, int], ...]:
        flushed = tuple(self.acc.add(key, item, now, self.limits))
        if self.cap is not None and self.acc.buffered >= self.cap:
            flushed += tuple(self.acc.flush_oldest())
        return flushed

    def __contains__(self, key: object) -> bool:
        return key in self.acc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.acc, name)


def make(max_messages: int = 3, max_seconds: float = 1.0, cap: int | None = None) -> Owner:
    return Owner(BatchLimits(max_messages, max_seconds), cap)


def test_flushes_on_size_with_items_in_arrival_order() -> None:
    acc = make(max_messages=3)
    assert acc.add(("m", "a"), 1, 0.0) == ()
    assert acc.add(("m", "a"), 2, 0.1) == ()
    (batch,) = acc.add(("m", "a"), 3, 0.2)
    assert batch.items == [1, 2, 3]
    assert batch.reason is FlushReason.SIZE
    assert batch.key == ("m", "a")
    assert acc.buffered == 0 and acc.open_groups == 0


def test_groups_are_separate_per_method_and_batch_key() -> None:
    acc = make(max_messages=2)
    acc.add(("m", "a"), 1, 0.0)
    acc.add(("m", "b"), 2, 0.0)
    acc.add(("n", "a"), 3, 0.0)
    assert acc.open_groups == 3
    (batch,) = acc.add(("m", "b"), 4, 0.0)
    assert batch.items == [2, 4]


def test_time_flush_counts_from_the_first_message() -> None:
    acc = make(max_messages=100, max_seconds=1.0)
    acc.add(("m", None), 1, 10.0)
    acc.add(("m", None), 2, 10.9)  # later messages do not extend the deadline
    assert acc.next_deadline() == 11.0
    assert acc.flush_due(10.99) == []
    (batch,) = acc.flush_due(11.0)
    assert batch.items == [1, 2] and batch.reason is FlushReason.TIME
    assert acc.next_deadline() is None


def test_a_group_reopened_after_a_size_flush_gets_a_fresh_deadline() -> None:
    acc = make(max_messages=2, max_seconds=1.0)
    acc.add(("m", None), 1, 0.0)
    acc.add(("m", None), 2, 0.5)  # size flush
    acc.add(("m", None), 3, 0.8)
    assert acc.flush_due(1.0) == []  # the stale deadline of the first group flushes nothing
    assert acc.next_deadline() == 1.8


def test_flush_all_empties_everything_oldest_first() -> None:
    acc = make(max_messages=10)
    acc.add(("m", "b"), 1, 1.0)
    acc.add(("m", "a"), 2, 0.0)
    batches = acc.flush_all()
    assert [b.key for b in batches] == [("m", "a"), ("m", "b")]
    assert all(b.reason is FlushReason.SHUTDOWN for b in batches)
    assert acc.buffered == 0 and acc.next_deadline() is None


def test_memory_cap_flushes_the_group_due_first() -> None:
    acc = make(max_messages=100, cap=4)
    acc.add(("m", "old"), 1, 0.0)
    acc.add(("m", "new"), 2, 0.5)
    acc.add(("m", "old"), 3, 0.6)
    (batch,) = acc.add(("m", "new"), 4, 0.7)
    assert batch.key == ("m", "old") and batch.reason is FlushReason.MEMORY
    assert acc.buffered == 2


def test_limits_are_validated() -> None:
    import pytest

    with pytest.raises(ValueError, match="max_messages"):
        BatchLimits(0, 1.0)
    with pytest.raises(ValueError, match="max_seconds"):
        BatchLimits(1, 0)


events = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),  # batch key
        st.sampled_from(["m", "n"]),  # method
        st.floats(min_value=0.0, max_value=0.7),  # time step before this event
        st.booleans(),  # whether the executor's timer fires before this event
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(
    events=events,
    max_messages=st.integers(1, 7),
    max_seconds=st.floats(0.05, 2.0),
    cap=st.one_of(st.none(), st.integers(1, 20)),
)
def test_no_item_lost_or_duplicated_and_limits_hold(
    events: list[tuple[str, str, float, bool]],
    max_messages: int,
    max_seconds: float,
    cap: int | None,
) -> None:
    acc = make(max_messages, max_seconds, cap)
    now = 0.0
    flushed: list[Batch[Key, int]] = []
    arrival: dict[int, float] = {}
    for item, (key, method, step, tick) in enumerate(events):
        now += step
        if tick:
            for b in acc.flush_due(now):
                assert b.opened_at + max_seconds <= now  # never flushed by time before its deadline
                flushed.append(b)
        arrival[item] = now
        flushed += acc.add((method, key), item, now)
        assert acc.buffered == len(events[: item + 1]) - sum(len(b.items) for b in flushed)
        if cap is not None:
            assert acc.buffered < cap
    flushed += acc.flush_all()
    seen = Counter(i for b in flushed for i in b.items)
    assert seen == Counter(range(len(events)))  # every item exactly once
    for b in flushed:
        assert 1 <= len(b.items) <= max_messages
        assert {(m, k) for m, k, *_ in [(events[i][1], events[i][0]) for i in b.items]} == {b.key}
        assert b.opened_at == arrival[b.items[0]]


@settings(max_examples=200, deadline=None)
@given(
    arrivals=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=60),
    max_seconds=st.floats(0.05, 1.0),
)
def test_every_group_is_due_by_first_arrival_plus_max_seconds(
    arrivals: list[float], max_seconds: float
) -> None:
    """A timer driven by next_deadline() flushes each group within max_seconds of its first item."""
    acc = make(max_messages=10_000, max_seconds=max_seconds)
    now = 0.0
    firsts: dict[int, float] = {}
    flushed: list[Batch[Key, int]] = []
    for item, step in enumerate(arrivals):
        # Fire the timer at every deadline passed during this step, at the deadline itself.
        target = now + step
        while (d := acc.next_deadline()) is not None and d <= target:
            flushed += acc.flush_due(d)
        now = target
        key: Key = ("m", str(item % 3))
        if key not in acc:
            firsts[item] = now
        flushed += acc.add(key, item, now)
    while (d := acc.next_deadline()) is not None:
        for b in acc.flush_due(d):
            assert d == b.opened_at + max_seconds
            flushed.append(b)
    assert sum(len(b.items) for b in flushed) == len(arrivals)
    assert all(b.reason is FlushReason.TIME for b in flushed)


def _state(acc: BatchAccumulator[Key, int]) -> tuple[Any, ...]:
    return (acc.buffered, acc.open_groups, acc.next_deadline(),
            [(b.key, b.items, b.opened_at, b.reason) for b in acc.flush_all()])


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 12),
                          st.sampled_from([0.0, 0.5, 2.0])), max_size=20),
       st.integers(1, 4))
def test_add_many_is_that_many_adds(runs: list[tuple[str, int, float]], most: int) -> None:
    limits = BatchLimits(most, 1.0)
    one: BatchAccumulator[Key, int] = BatchAccumulator()
    many: BatchAccumulator[Key, int] = BatchAccumulator()
    item = 0
    for method, count, now in runs:
        items = list(range(item, item + count))
        item += count
        by_one = [b for i in items for b in one.add((method, None), i, now, limits)]
        at_once = many.add_many((method, None), items, now, limits)
        assert [(b.key, b.items, b.opened_at, b.reason) for b in at_once] == [
            (b.key, b.items, b.opened_at, b.reason) for b in by_one]
        assert (one.buffered, one.next_deadline()) == (many.buffered, many.next_deadline())
    assert _state(one) == _state(many)
