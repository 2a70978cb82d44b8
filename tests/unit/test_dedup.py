"""RecentOutcomes: bounded memory of settled attempts (properties with hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.worker.recent import RecentOutcomes

CAPACITY = 16


@given(st.lists(st.integers(0, 60), max_size=300))
def test_the_last_half_capacity_keys_are_remembered_and_at_most_capacity_kept(
    keys: list[int],
) -> None:
    recent: RecentOutcomes[int, int] = RecentOutcomes(CAPACITY, max_bytes=10**9)
    for i, key in enumerate(keys):
        recent.add(key, i)
        assert len(recent) <= CAPACITY
        for back in keys[max(0, i + 1 - CAPACITY // 2) : i + 1]:
            assert back in recent
    if keys:
        assert recent.get(keys[-1]) == len(keys) - 1


@given(st.lists(st.integers(0, 10_000), max_size=200), st.integers(1, 40))
def test_add_many_remembers_every_key_of_the_last_batch(keys: list[int], batch: int) -> None:
    recent: RecentOutcomes[int, None] = RecentOutcomes(CAPACITY, max_bytes=0)
    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        recent.add_many(chunk, None)
        assert all(k in recent for k in chunk)
        assert len(recent) <= CAPACITY + batch  # a generation may overshoot by one batch


def test_values_are_bounded_by_bytes() -> None:
    recent: RecentOutcomes[int, bytes] = RecentOutcomes(1000, max_bytes=100)
    for i in range(10):
        recent.add(i, b"x" * 20, 20)
    held = [i for i in range(10) if i in recent]
    assert sum(20 for _ in held) <= 100 + 20
    assert 9 in recent and 0 not in recent


def test_generations_and_discard() -> None:
    recent: RecentOutcomes[str, int] = RecentOutcomes(4, max_bytes=0)
    recent.add("a", 1)
    recent.add("b", 2)  # the first generation is full: it becomes the previous one
    recent.add("c", 3)
    current, previous = recent.generations()
    assert "c" in current and "a" in previous
    recent.discard("a")
    assert "a" not in recent and recent.get("a") is None


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        RecentOutcomes(1, 0)
    with pytest.raises(ValueError):
        RecentOutcomes(4, -1)
