"""Bootstrap CIs (exact and Monte-Carlo), IQM, the seeds-to-decide rule, comparisons with a
tolerance and the PredatorPrey basins."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from ficomm.analysis import stats


def test_bootstrap_ci_is_exact_for_few_seeds_and_seeded_beyond():
    x = np.random.default_rng(1).normal(5.0, 2.0, size=8)  # 6,435 multisets: enumerated
    a = stats.bootstrap_ci(x, n_boot=2000, seed=3)
    assert a == stats.bootstrap_ci(x, n_boot=50, seed=4)  # no seed, no resample count
    assert a[0] < x.mean() < a[1]
    y = np.random.default_rng(1).normal(5.0, 2.0, size=12)  # 1.35 million: Monte-Carlo
    b = stats.bootstrap_ci(y, n_boot=2000, seed=3)
    assert b == stats.bootstrap_ci(y, n_boot=2000, seed=3)
    assert b != stats.bootstrap_ci(y, n_boot=2000, seed=4)


def test_bootstrap_ci_matches_normal_theory_for_many_seeds():
    x = np.random.default_rng(0).normal(0.0, 1.0, size=400)
    lo, hi = stats.bootstrap_ci(x, seed=0)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)


def test_no_ci_from_fewer_than_three_seeds():
    assert all(math.isnan(v) for v in stats.bootstrap_ci([1.0]))
    assert all(math.isnan(v) for v in stats.bootstrap_ci([1.0, 3.0]))  # the smoke case
    res = stats.bootstrap_contrast({"A": [1.0, 2.0], "B": [0.0, 1.0, 2.0]}, {"A": 1, "B": -1})
    assert res["effect"] == 0.5 and math.isnan(res["ci_low"]) and res["method"] is None
    assert math.isnan(stats.bootstrap_poi([1.0, 2.0], [0.0, 1.0, 2.0])[1])
    assert math.isnan(stats.stratified_bootstrap_iqm([1.0, 2.0])[1])
    lo, hi = stats.bootstrap_ci_columns(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, np.nan]]))
    assert lo[0] <= 2.0 <= hi[0] and math.isnan(lo[1])


def test_column_bootstrap_handles_missing_seeds():
    m = np.array([[1.0, 2.0, np.nan], [3.0, 2.0, 5.0], [5.0, 2.0, np.nan]])
    lo, hi = stats.bootstrap_ci_columns(m, n_boot=2000, seed=0)
    # Three seeds: the all-one-seed resamples carry 1/27 > 2.5% each, so the exact CI is the
    # seeds' range.
    assert (lo[0], hi[0]) == (1.0, 5.0)
    assert lo[1] == hi[1] == 2.0  # no spread, no width
    assert math.isnan(lo[2]) and math.isnan(hi[2])  # one seed: no CI


def test_column_bootstrap_iqm_is_the_contrast_bootstrap_per_column():
    m = np.random.default_rng(2).normal(size=(5, 4))
    m[4, 3] = np.nan
    for est in ("mean", "iqm"):
        lo, hi = stats.bootstrap_ci_columns(m, estimator=est)
        for j in range(4):
            res = stats.bootstrap_contrast({"x": m[:, j]}, {"x": 1.0}, estimator=est)
            assert (lo[j], hi[j]) == (res["ci_low"], res["ci_high"])


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
        (-2.999999999999998, "avoid"),  # the band's top edge, up to float rounding
        (-5.000000000000002, "avoid"),
        (-2.9995, "capture"),
        (-5.0005, "penalised"),
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


def test_bootstrap_poi_is_exact_and_brackets():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 0.0]
    p, lo, hi = stats.bootstrap_poi(x, y, n_boot=3000, seed=1)
    assert p == 0.75 and lo < 0.75 < hi and 0.0 <= lo and hi <= 1.0
    assert (p, lo, hi) == stats.bootstrap_poi(x, y, n_boot=10, seed=2)  # enumerated: no seed
    # Every pair of ordered resamples (4^4 x 3^3, equally likely), by brute force.
    xs, ys = np.array(x), np.array(y)
    boot = [
        stats.probability_of_improvement(xs[list(i)], ys[list(j)])
        for i in itertools.product(range(4), repeat=4)
        for j in itertools.product(range(3), repeat=3)
    ]
    assert (lo, hi) == pytest.approx(_exact_bounds(boot), abs=1e-12)
    assert stats.bootstrap_poi([5.0, 6.0, 7.0], [1.0, 2.0, 3.0]) == (1.0, 1.0, 1.0)
    assert math.isnan(stats.bootstrap_poi([1.0], [0.0, 2.0])[1])


def test_probability_of_improvement_ties_within_a_tolerance():
    x, y = [-2.999999999999998, 0.0], [-3.0, -3.0]
    assert stats.probability_of_improvement(x, y) == 1.0  # rliable: a float sum's last bit wins
    assert stats.probability_of_improvement(x, y, tol=stats.COMPARISON_TOL) == 0.75


def test_stratified_bootstrap_resamples_within_each_task():
    scores = np.array([[0.0, 100.0], [1.0, 101.0], [1.0, 101.0]])
    point, lo, hi = stats.stratified_bootstrap_iqm(scores, n_boot=2000, seed=0)
    # Pooled IQM of 6 = mean of the middle four (one cut per end): the two larger values of
    # task 0 and the two smaller of task 1. Resampling within tasks keeps it in [50, 51];
    # pooled resampling would reach 0.5 or 100.5.
    assert point == 50.75 and 50.0 <= lo <= point <= hi <= 51.0
    assert (point, lo, hi) == stats.stratified_bootstrap_iqm(scores, seed=1)  # exact
    # By brute force over every ordered resample of each task (27 x 27).
    boot = [
        stats.iqm(np.concatenate([scores[list(i), 0], scores[list(j), 1]]))
        for i in itertools.product(range(3), repeat=3)
        for j in itertools.product(range(3), repeat=3)
    ]
    assert (lo, hi) == pytest.approx(_exact_bounds(boot), abs=1e-12)


def _exact_bounds(samples) -> tuple[float, float]:
    """The exact bounds of equally likely resamples: the 2.5% quantile from below, and the
    97.5% from above."""
    s = np.sort(np.asarray(samples, dtype=float))
    k = math.ceil(0.025 * s.size - 1e-9)  # P(T <= s[k-1]) >= 2.5%
    return float(s[k - 1]), float(s[s.size - k])


def test_exact_bootstrap_by_hand_and_by_brute_force():
    # [0, 0, 0, 1], mean of a resample = K / 4, K ~ Binomial(4, 1/4): P(K = 4) = 1/256 < 2.5%
    # <= P(K >= 3) = 13/256, and P(K = 0) = 81/256: the exact CI is [0, 0.75].
    res = stats.bootstrap_contrast({"A": [0.0, 0.0, 0.0, 1.0]}, {"A": 1.0})
    assert (res["ci_low"], res["ci_high"]) == (0.0, 0.75)
    assert res["method"] == "exact" and res["resamples"] == 35 and res["mc_error_low"] == 0.0
    # A contrast of two arms: every ordered resample of each (3^3 x 4^4, equally likely).
    a, b = np.array([1.0, 4.0, 2.5]), np.array([0.0, 3.0, 1.0, 9.0])
    for est in ("mean", "iqm"):
        res = stats.bootstrap_contrast({"a": a, "b": b}, {"a": 1.0, "b": -1.0}, estimator=est)
        f = stats.iqm if est == "iqm" else np.mean
        boot = [
            f(a[list(i)]) - f(b[list(j)])
            for i in itertools.product(range(3), repeat=3)
            for j in itertools.product(range(4), repeat=4)
        ]
        assert (res["ci_low"], res["ci_high"]) == pytest.approx(_exact_bounds(boot), abs=1e-12)


def test_exact_contrast_in_two_halves_equals_one_enumeration(monkeypatch):
    rng = np.random.default_rng(4)
    arms = {k: rng.normal(size=3) for k in "abcd"}
    w = {"a": 1.0, "b": -1.0, "c": -1.0, "d": 1.0}
    whole = stats.bootstrap_contrast(arms, w, estimator="iqm")  # 10^4 combinations at once
    monkeypatch.setattr(stats, "EXACT_LIMIT", 100)  # two halves of 10 x 10
    halves = stats.bootstrap_contrast(arms, w, estimator="iqm")
    assert halves["method"] == whole["method"] == "exact" and halves["resamples"] == 10**4
    assert (halves["ci_low"], halves["ci_high"]) == pytest.approx(
        (whole["ci_low"], whole["ci_high"]), abs=1e-12
    )


def test_monte_carlo_bounds_and_their_error(monkeypatch):
    rng = np.random.default_rng(5)
    arms = {k: rng.normal(size=5) for k in "ab"}
    w = {"a": 1.0, "b": -1.0}
    exact = stats.bootstrap_contrast(arms, w, estimator="iqm")
    monkeypatch.setattr(stats, "EXACT_LIMIT", 50)  # 126 multisets per arm: Monte-Carlo
    covered = 0
    for seed in range(20):
        mc = stats.bootstrap_contrast(arms, w, estimator="iqm", n_boot=4000, seed=seed)
        assert mc["method"] == "monte-carlo" and mc["resamples"] == 4000
        assert 0 < mc["mc_error_low"] < 0.5
        covered += abs(mc["ci_low"] - exact["ci_low"]) <= mc["mc_error_low"]
        covered += abs(mc["ci_high"] - exact["ci_high"]) <= mc["mc_error_high"]
    assert covered >= 34  # a 95% error interval, 40 bounds
    # A boundary near a bound buys more resamples; far from both, none.
    near = exact["ci_low"] + 0.01
    more = stats.bootstrap_contrast(arms, w, estimator="iqm", n_boot=4000, boundaries=[near])
    assert 4000 < more["resamples"] <= stats.MAX_BOOT_FACTOR * 4000
    far = stats.bootstrap_contrast(arms, w, estimator="iqm", n_boot=4000, boundaries=[1e6])
    assert far["resamples"] == 4000


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


def test_a_rounding_error_does_not_cross_the_threshold():
    # -2.999999999999998 is -3.0 summed in floating point (one capture in 20 episodes).
    steps = [0, 10, 20]
    at = stats.steps_to_threshold(steps, [-4.0, -2.999999999999998, -3.0], -3.0, censor_at=30)
    assert at == (30.0, False)
    # The smallest real step above it (a 0.01 reward in one of 20 episodes) crosses.
    at = stats.steps_to_threshold(steps, [-4.0, -2.9995, -3.0], -3.0, censor_at=30)
    assert at == (10.0, True)
    assert stats.COMPARISON_TOL == 1e-6 * stats.REWARD_UNIT == pytest.approx(1e-8)


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
