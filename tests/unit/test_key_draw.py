"""The exact odds benchmarks/key_draw.py prints for the Key_Shared key draw (issue 15)."""

from __future__ import annotations

import random

import pytest

from benchmarks.key_draw import busiest_odds


def test_small_cases_by_hand() -> None:
    assert busiest_odds([0.5, 0.5], 2) == pytest.approx(0.5)  # both keys on one consumer
    assert busiest_odds([1.0, 0.0], 2) == pytest.approx(1.0)
    assert busiest_odds([0.25] * 4, 4) == pytest.approx(1 - 24 / 256)  # not one key each


def test_twenty_keys_on_four_even_consumers() -> None:
    # The floor of the acceptance point "no worker above 1.5x its fair share": even with
    # perfectly even hash ranges, 20 random keys put 8+ on one of 4 consumers 39.9% of the time.
    assert busiest_odds([0.25] * 4, 20) == pytest.approx(0.3987, abs=1e-4)
    rng = random.Random(7)
    trials = 20_000
    over = 0
    for _ in range(trials):
        counts = [0] * 4
        for _ in range(20):
            counts[rng.randrange(4)] += 1
        over += max(counts) > 7.5
    assert over / trials == pytest.approx(0.3987, abs=0.015)


def test_uneven_ranges_make_it_worse_and_sub_keys_better() -> None:
    assert busiest_odds([0.31, 0.23, 0.23, 0.23], 20) > busiest_odds([0.25] * 4, 20)
    assert busiest_odds([0.25] * 4, 40) == pytest.approx(0.105, abs=1e-3)  # key_spread=2
    assert busiest_odds([0.25] * 4, 80) == pytest.approx(0.018, abs=1e-3)  # key_spread=4
