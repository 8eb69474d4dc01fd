"""Bootstrap CIs, IQM, the seeds-to-decide rule and the PredatorPrey basins."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ficomm.analysis import stats


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    x = np.random.default_rng(1).normal(5.0, 2.0, size=8)
    a = stats.bootstrap_ci(x, n_boot=2000, seed=3)
    assert a == stats.bootstrap_ci(x, n_boot=2000, seed=3)
    assert a != stats.bootstrap_ci(x, n_boot=2000, seed=4)
    assert a[0] < x.mean() < a[1]


def test_bootstrap_ci_matches_normal_theory_for_many_seeds():
    x = np.random.default_rng(0).normal(0.0, 1.0, size=400)
    lo, hi = stats.bootstrap_ci(x, seed=0)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)


def test_bootstrap_ci_few_seeds():
    assert all(math.isnan(v) for v in stats.bootstrap_ci([1.0]))
    lo, hi = stats.bootstrap_ci([1.0, 3.0], n_boot=1000)  # the smoke case: 2 seeds
    assert 1.0 <= lo < hi <= 3.0


def test_column_bootstrap_handles_missing_seeds():
    m = np.array([[1.0, 2.0, np.nan], [3.0, 2.0, 5.0], [5.0, 2.0, np.nan]])
    lo, hi = stats.bootstrap_ci_columns(m, n_boot=2000, seed=0)
    assert lo[0] < 3.0 < hi[0]
    assert lo[1] == hi[1] == 2.0  # no spread, no width
    assert math.isnan(lo[2]) and math.isnan(hi[2])  # one seed: no CI


def test_contrast_effect_and_ci():
    arms = {"A": [10.0, 11.0, 12.0, 13.0], "B": [1.0, 2.0, 3.0]}
    res = stats.bootstrap_contrast(arms, {"A": 1.0, "B": -1.0}, n_boot=3000, seed=0)
    assert res["effect"] == pytest.approx(11.5 - 2.0)
    assert res["ci_low"] < 9.5 < res["ci_high"]
    assert res["ci_low"] > 7.0 and res["ci_high"] < 12.0
    assert res["arms"]["B"]["sd"] == pytest.approx(1.0)
    one = stats.bootstrap_contrast({"A": [1.0], "B": [2.0, 3.0]}, {"A": 1, "B": -1})
    assert one["effect"] == pytest.approx(-1.5) and math.isnan(one["ci_low"])


def test_seeds_to_decide_is_the_ci_width_extrapolation():
    arms = {"A": {"sd": 1.0, "weight": 1.0}, "B": {"sd": 1.0, "weight": -1.0}}
    n = stats.seeds_to_decide(arms, 1.0)
    assert n == math.ceil((stats.Z95 * math.sqrt(2)) ** 2) == 8
    half = lambda k: stats.Z95 * math.sqrt(2 / k)  # noqa: E731
    assert half(n) < 1.0 <= half(n - 1)
    assert stats.seeds_to_decide(arms, 0.0) is None
    assert stats.seeds_to_decide({"A": {"sd": math.nan, "weight": 1.0}}, 1.0) is None


def test_iqm_is_the_25_percent_trimmed_mean():
    x = [1.0, 2.0, 3.0, 4.0, 100.0, 5.0, 6.0, 7.0]
    assert stats.iqm(x) == pytest.approx(sps.trim_mean(x, 0.25)) == pytest.approx(4.5)
    assert stats.iqm([2.0, 4.0]) == 3.0


@pytest.mark.parametrize(
    ("value", "basin"),
    [
        (-4.0, "avoid"),
        (-3.2, "avoid"),
        (-4.9, "avoid"),
        (1.0, "capture"),
        (-2.5, "capture"),
        (-7.0, "penalised"),
    ],
)
def test_basins(value, basin):
    assert stats.classify_basin(value) == basin
