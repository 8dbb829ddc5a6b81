"""Calibration of the decision rules by simulation with a known truth (generators in
:mod:`benchmarks.calibration`; measured rates in ``docs/verdicts.md``).

Default tier: a few hundred seeded simulations per kind, fast. The bounds allow for simulation error: with ``n``
simulations a true rate of 5% is measured above ``0.05 + 2 sqrt(0.05 * 0.95 / n)`` in about 2.5% of seeds, so the
default tier asserts "false holds <= 5% + 2 binomial standard errors"; the slow tier runs 2,000 simulations, where
that margin is 1 point. The threshold bound would fail if the rule read one-sided bounds at ``alpha`` instead of
``alpha/2`` (7.7% false holds at the boundary, measured); the band's "one block at the threshold" bound failed with
a studentised band (7.2%, 500 simulations).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.calibration import (
    simulate_band,
    simulate_conjunction,
    simulate_count,
    simulate_rsa,
    simulate_threshold,
)


def _bound(rate: float, n: int) -> float:
    """``rate`` plus two binomial standard errors at ``n`` simulations."""
    return rate + 2 * math.sqrt(rate * (1 - rate) / n)


def test_threshold_rule_false_holds_at_the_boundary_and_power() -> None:
    n = 300
    boundary = simulate_threshold(0.8, n_sims=n, n_boot=500)
    assert boundary.holds <= _bound(0.05, n), boundary
    assert simulate_threshold(0.7, n_sims=n, n_boot=500, seed=1).holds <= 0.01
    assert simulate_threshold(0.95, n_sims=n, n_boot=500, seed=2).holds >= 0.9


def test_count_rule_right_count_holds_wrong_count_does_not() -> None:
    n = 60
    right = simulate_count(3, 3, n_sims=n, n_boot=100)
    assert right.holds >= 0.9, right  # measured 0.995 at 200 simulations
    assert simulate_count(1, 1, n_sims=n, n_boot=100, seed=3).holds >= 0.9
    for truth, claimed in ((2, 3), (1, 3), (2, 1)):
        wrong = simulate_count(truth, claimed, n_sims=n, n_boot=100, seed=truth + claimed)
        assert wrong.holds <= 0.05, (truth, claimed, wrong)


def test_conjunction_false_holds_when_one_part_is_at_its_boundary() -> None:
    n = 300
    rates = simulate_conjunction(0.8, 0.95, n_sims=n, n_boot=500)
    assert rates.holds <= _bound(0.05, n), rates
    assert simulate_conjunction(0.95, 0.95, n_sims=n, n_boot=500, seed=1).holds >= 0.9


def test_band_false_holds_and_power_over_30_correlated_blocks() -> None:
    n = 80
    at_boundary = simulate_band(np.full(30, 0.84), n_sims=n, n_boot=400)
    assert at_boundary.holds <= _bound(0.05, n), at_boundary
    one_low = simulate_band(np.r_[0.84, np.full(29, 0.95)], n_sims=n, n_boot=400, seed=1)
    assert one_low.holds <= _bound(0.05, n), one_low
    # power: measured 0.55 at 0.97 and 0.895 at 0.98 everywhere (200 simulations); at 0.99, 0.995
    assert simulate_band(np.full(30, 0.99), n_sims=n, n_boot=400, seed=3).holds >= 0.9


@pytest.mark.slow
def test_full_size_calibration() -> None:
    n = 2000
    assert simulate_threshold(0.8, n_sims=n).holds <= _bound(0.05, n)
    assert simulate_conjunction(0.8, 0.95, n_sims=n).holds <= _bound(0.05, n)
    assert simulate_band(np.full(30, 0.84), n_sims=500).holds <= _bound(0.05, 500)
    assert simulate_band(np.r_[0.84, np.full(29, 0.95)], n_sims=500, seed=1).holds <= _bound(0.05, 500)
    assert simulate_count(3, 3, n_sims=500).holds >= 0.9
    assert simulate_count(2, 3, n_sims=500, seed=1).holds <= 0.05


@pytest.mark.slow
def test_rsa_rule_at_34_words() -> None:
    n = 300
    assert simulate_rsa(0.8, n_sims=n).holds <= _bound(0.05, n)
    assert simulate_rsa(0.9, n_sims=100, seed=3).holds >= 0.9
