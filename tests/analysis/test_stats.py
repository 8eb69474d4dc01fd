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


# ---------------------------------------------------------------- rliable's definitions


def test_iqm_pools_runs_and_tasks_and_ignores_a_trimmed_censored_value():
    scores = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    # pooled and sorted: 1 2 3 4 10 20 30 40; 2 cut from each end -> mean(3, 4, 10, 20)
    assert stats.iqm(scores) == pytest.approx(9.25)
    # One run of four censored: trimmed whatever the censoring value.
    assert stats.iqm([10.0, 20.0, 30.0, 210_000.0]) == stats.iqm([10.0, 20.0, 30.0, 1e12]) == 25.0


def test_probability_of_improvement_worked_examples():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 0.0]
    # pairs won: 1 beats 0; 2 ties both 2s (0.5 + 0.5) and beats 0; 3 and 4 beat all three
    assert stats.probability_of_improvement(x, y) == pytest.approx((1 + 2 + 3 + 3) / 12)
    assert stats.probability_of_improvement(y, x) == pytest.approx(1 - 0.75)
    assert stats.probability_of_improvement(x, x) == 0.5
    assert stats.probability_of_improvement([5.0, 5.0], [5.0]) == 0.5  # all ties
    assert stats.probability_of_improvement([3.0], [1.0, 2.0]) == 1.0
    # Two tasks: the mean of the per-task probabilities (1.0 and 0.0).
    two = stats.probability_of_improvement(np.array([[2.0, 0.0]]), np.array([[1.0, 1.0]]))
    assert two == 0.5


def test_probability_of_improvement_is_mann_whitney_u_over_nm():
    rng = np.random.default_rng(5)
    for _ in range(20):
        x = rng.integers(0, 5, size=int(rng.integers(2, 9))).astype(float)  # with ties
        y = rng.integers(0, 5, size=int(rng.integers(2, 9))).astype(float)
        u = sps.mannwhitneyu(x, y, alternative="greater").statistic
        assert stats.probability_of_improvement(x, y) == pytest.approx(u / (x.size * y.size))


def test_bootstrap_poi_is_seeded_and_brackets():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 0.0]
    p, lo, hi = stats.bootstrap_poi(x, y, n_boot=3000, seed=1)
    assert p == 0.75 and lo < 0.75 < hi and 0.0 <= lo and hi <= 1.0
    assert (p, lo, hi) == stats.bootstrap_poi(x, y, n_boot=3000, seed=1)
    assert stats.bootstrap_poi([5.0, 6.0], [1.0, 2.0], n_boot=500) == (1.0, 1.0, 1.0)
    assert math.isnan(stats.bootstrap_poi([1.0], [0.0, 2.0])[1])


def test_stratified_bootstrap_resamples_within_each_task():
    scores = np.array([[0.0, 100.0], [1.0, 101.0]])
    point, lo, hi = stats.stratified_bootstrap_iqm(scores, n_boot=2000, seed=0)
    # Pooled IQM of 4 = mean of the middle two = (largest of task 0 + smallest of task 1) / 2:
    # resampling within tasks keeps it in [50, 51]; pooled resampling would reach 0.5 or 100.5.
    assert point == 50.5 and 50.0 <= lo <= point <= hi <= 51.0
    assert (lo, hi) == (50.0, 51.0)


def test_two_seed_percentile_ci_is_hand_computable():
    # Resampling [0, 1] twice: mean 0 (p 1/4), 0.5 (1/2), 1 (1/4): 2.5% and 97.5% are 0 and 1.
    res = stats.bootstrap_contrast({"A": [0.0, 1.0]}, {"A": 1.0}, estimator="iqm", n_boot=4000)
    assert (res["ci_low"], res["ci_high"]) == (0.0, 1.0)


def test_iqm_contrast_effect_and_arms():
    arms = {"A": [1.0, 2.0, 3.0, 4.0, 100.0], "B": [0.0, 0.0, 0.0]}
    res = stats.bootstrap_contrast(arms, {"A": 1.0, "B": -1.0}, estimator="iqm", n_boot=2000)
    assert res["effect"] == pytest.approx(3.0)  # int(1.25) = 1 cut per end: mean(2, 3, 4)
    assert res["arms"]["A"]["iqm"] == 3.0 and res["arms"]["A"]["mean"] == 22.0
    assert res["ci_low"] <= 3.0 <= res["ci_high"]
    mean = stats.bootstrap_contrast(arms, {"A": 1.0, "B": -1.0}, n_boot=2000)
    assert mean["effect"] == pytest.approx(22.0)
    with pytest.raises(ValueError, match="estimator"):
        stats.bootstrap_contrast(arms, {"A": 1.0}, estimator="median")


# ---------------------------------------------------------------- learning-curve summaries


def test_normalised_auc_worked_examples():
    assert stats.normalised_auc([0, 10, 20], [0.0, 10.0, 10.0], 20) == pytest.approx(7.5)
    # Last value held to the budget, first held back to step 0: (0 + 25 + 100) / 20.
    assert stats.normalised_auc([5, 10], [0.0, 10.0], 20) == pytest.approx(6.25)
    assert stats.normalised_auc([0, 7, 13], [-4.0, -4.0, -4.0], 20) == pytest.approx(-4.0)
    # Evaluations past the budget are clipped to it; NaN values dropped; order does not matter.
    assert stats.normalised_auc([10, 0, 30], [10.0, 0.0, 99.0], 20) == pytest.approx(
        stats.normalised_auc([0, 10, 20], [0.0, 10.0, 99.0], 20)
    )
    assert stats.normalised_auc([0, 10, 20], [0.0, np.nan, 10.0], 20) == pytest.approx(5.0)
    assert math.isnan(stats.normalised_auc([], [], 20))
    assert math.isnan(stats.normalised_auc([0], [1.0], 0))


def test_steps_to_threshold_first_crossing_and_censoring():
    steps, values = [0, 10, 20, 30], [-4.0, -4.0, 1.0, -4.0]
    assert stats.steps_to_threshold(steps, values, -3.0, censor_at=40) == (20.0, True)
    # Strictly above: reaching the threshold exactly does not count.
    assert stats.steps_to_threshold(steps, [-4, -3, -3, -3], -3.0, censor_at=40) == (40.0, False)
    assert stats.steps_to_threshold(steps, [-4.0] * 4, -3.0, censor_at=40) == (40.0, False)


@pytest.mark.parametrize(
    ("env", "value", "basin"),
    [
        ("predator_prey", -4.9, "avoid"),
        ("predator_prey", -2.5, "capture"),
        ("predator_prey_16", -16.0, "avoid"),
        ("predator_prey_16", -12.5, "avoid"),  # within 0.25 per agent (4.0) of -16
        ("predator_prey_16", -4.0, "capture"),  # the 4-agent avoid level is a capture here
        ("predator_prey_16", -20.5, "penalised"),
        ("predator_prey_8", -8.0, "avoid"),
        ("predator_prey_8", -5.5, "capture"),
        ("3s_vs_5z", -4.0, None),
    ],
)
def test_basins_per_env(env, value, basin):
    assert stats.classify_env_basin(env, value) == basin
    if env == "predator_prey":  # the paper's levels are the defaults
        assert stats.basin_levels(env) == (stats.PREDATOR_PREY_AVOID_RETURN, stats.BASIN_TOL)
