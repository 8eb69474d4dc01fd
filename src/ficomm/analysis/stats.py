"""Statistics over seeds: bootstrap CIs (exact where the resamples can be enumerated, seeded
Monte-Carlo with an estimated error otherwise), the interquartile mean, the probability of
improvement, per-run learning-curve summaries (normalised area under the curve, env steps to a
threshold), the seeds-needed extrapolation used by the replication report, and the
PredatorPrey basins.

IQM, probability of improvement and the stratified bootstrap follow rliable (Agarwal et al.
2021, google-research/rliable, `rliable/metrics.py` and `rliable/library.py`) exactly:

- IQM: `scipy.stats.trim_mean(scores, 0.25)` over all runs (and tasks) pooled: the mean of the
  middle 50% (int(0.25 n) values cut from each end; below 4 values nothing is cut: the mean).
- probability of improvement P(X > Y): per task the Mann-Whitney U of X over Y divided by
  n_x n_y, i.e. the mean over all pairs of [x > y] + 0.5 [x = y]; averaged over tasks.
- stratified bootstrap: runs resampled with replacement within each task (and, for a statistic
  of several independent arms, within each arm independently: rliable's
  StratifiedIndependentBootstrap); percentile CIs.
rliable itself is not a dependency: it pins arch < 8, and arch 7 does not import with pandas 3.

Exact bootstrap. n seeds have C(2n-1, n) distinct resamples (multisets: 10, 35, 126 for 3, 4,
5 seeds); the one with counts c is drawn with multinomial probability n! / (prod c_i! n^n).
Where they number at most EXACT_LIMIT (per arm; for a contrast of independent arms, per half
of its product distribution), the bootstrap distribution is enumerated with those weights and
the CI bounds are its quantiles: low = the smallest t with P(T <= t) >= alpha, high = the
largest t with P(T >= t) >= alpha (alpha = 2.5%; negating T swaps them). They depend on no
seed: `method` "exact", Monte-Carlo error 0. A contrast sum_a w_a est_a is a sum of independent
terms: its arms are split into two halves, each half's distribution enumerated, and the
quantiles of their sum found by bisection on its CDF.

Otherwise `n_boot` resamples from `np.random.default_rng(seed)` (every bootstrap builds its
own, so no result depends on what was computed before it), percentile bounds as rliable
(`np.percentile`), and each bound's Monte-Carlo error: the half-width of the 95% binomial
interval of a sample quantile (the order statistics alpha N -+ 1.96 sqrt(N alpha (1 - alpha))
around it). Given decision `boundaries`, a contrast doubles its resamples, up to
MAX_BOOT_FACTOR x n_boot, while a bound lies within CLEAR_FACTOR errors of a boundary.

An arm with fewer than MIN_SEEDS seeds has no CI (NaN bounds): 2 seeds have 3 distinct
resamples, and their "95% CI" is the seeds' min-max.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import special as _spf
from scipy import stats as _sps

from ficomm.envs import ENV_NAMES, env_spec  # the registry only: no backend is imported

N_BOOT = 10_000
Z95 = 1.959963984540054  # two-sided 95% normal quantile
MIN_SEEDS = 3
# Largest number of resample combinations enumerated at once (per arm, per half of a
# contrast's product distribution, per task of a probability of improvement): 10 seeds have
# 92,378 multisets, 11 have 352,716. Above it the bootstrap is Monte-Carlo.
EXACT_LIMIT = 2**18
MAX_BOOT_FACTOR = 32
CLEAR_FACTOR = 3.0
# Probabilities summed in floating point: a CDF within this of alpha counts as reaching it.
_PROB_TOL = 1e-12

# Returns are sums of rewards in multiples of REWARD_UNIT (PredatorPrey's step cost, its
# smallest reward), averaged over an evaluation's episodes, and summing them in floating point
# leaves errors near 1e-15 (a recorded -2.999999999999998 is -3.0: one capture in 20
# episodes). Values within COMPARISON_TOL of a level are that level: 1e-6 of the reward unit,
# far above the rounding and far below the resolution of any mean over up to 10^4 episodes.
REWARD_UNIT = 0.01
COMPARISON_TOL = 1e-6 * REWARD_UNIT

# PredatorPrey (the paper's 4 agents): every agent pays -0.01 per step for 100 steps, and the
# team return sums 4 agents, so a team that never meets a prey ends at exactly -4. A capture is
# worth +5 per agent (+20 team), a lone-predator penalty -0.75 per agent (-3 team). Other team
# sizes have their own levels in their registry entries (`basin_levels`).
PREDATOR_PREY_AVOID_RETURN = -4.0
BASIN_TOL = 1.0
BASINS = ("capture", "avoid", "penalised")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Bootstrap CI of the mean over seeds (exact where it can be enumerated). NaN bounds for
    fewer than MIN_SEEDS values."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size < MIN_SEEDS:
        return (math.nan, math.nan)
    res = bootstrap_contrast({"x": x}, {"x": 1.0}, n_boot=n_boot, seed=seed, level=level)
    return res["ci_low"], res["ci_high"]


def bootstrap_ci_columns(
    matrix: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
    estimator: str = "mean",
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column bootstrap CI of `estimator` ("mean" or "iqm") over the rows of a (seeds,
    points) matrix, NaN = missing; NaN bounds where a column has fewer than MIN_SEEDS seeds.

    Columns sharing the same set of present seeds share one resampling (learning curves:
    every evaluation point of one configuration): all of its multisets where they can be
    enumerated, else `n_boot` seeded resamples.
    """
    _check_estimator(estimator)
    m = np.asarray(matrix, dtype=float)
    lo = np.full(m.shape[1], np.nan)
    hi = np.full(m.shape[1], np.nan)
    present = ~np.isnan(m)
    patterns: dict[bytes, list[int]] = {}
    for j in range(m.shape[1]):
        patterns.setdefault(present[:, j].tobytes(), []).append(j)
    rng = np.random.default_rng(seed)
    for cols in patterns.values():
        rows = np.flatnonzero(present[:, cols[0]])
        if rows.size < MIN_SEEDS:
            continue
        sub = m[np.ix_(rows, cols)]
        multisets = _multisets(rows.size)
        if multisets is None:
            idx = rng.integers(0, rows.size, size=(n_boot, rows.size))
            lo[cols], hi[cols] = _percentiles(_estimate(sub[idx], estimator), level)
            continue
        idx, p = multisets
        # Chunks of columns keep the (resamples, seeds, columns) array below ~128 MB.
        step = max(1, 2**24 // (idx.size or 1))
        for k in range(0, len(cols), step):
            part = _estimate(sub[:, k : k + step][idx], estimator)  # (resamples, columns)
            c = cols[k : k + step]
            lo[c], hi[c] = _weighted_bounds(part, p, level)
    return lo, hi


ESTIMATORS = ("mean", "iqm")


def bootstrap_contrast(
    arms: Mapping[str, Sequence[float]],
    weights: Mapping[str, float],
    *,
    estimator: str = "mean",
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
    boundaries: Sequence[float] = (),
) -> dict:
    """A linear contrast sum_a w_a * estimator(arm a), with every arm's runs resampled with
    replacement independently of the other arms (a stratified bootstrap, one stratum per arm);
    `estimator` is "mean" or "iqm".

    Returns effect; CI bounds (NaN where an arm has fewer than MIN_SEEDS seeds); `method`
    ("exact": every resample combination enumerated, or "monte-carlo"); `resamples` (the
    combinations, or the draws); `mc_error_low` / `mc_error_high` (each bound's Monte-Carlo
    error, 0 when exact); and per arm n, mean, iqm, SD and weight. `boundaries`: decision
    boundaries (Monte-Carlo only) near which more resamples are drawn.
    """
    _check_estimator(estimator)
    xs, per_arm = {}, {}
    effect = 0.0
    for name, w in weights.items():
        x = np.asarray(arms[name], dtype=float)
        x = x[~np.isnan(x)]
        if x.size == 0:
            raise ValueError(f"arm {name!r} has no values")
        xs[name] = x
        per_arm[name] = {
            "n": int(x.size),
            "mean": float(x.mean()),
            "iqm": iqm(x),
            "sd": float(x.std(ddof=1)) if x.size > 1 else math.nan,
            "weight": float(w),
        }
        effect += w * per_arm[name][estimator]
    out = {
        "effect": float(effect),
        "ci_low": math.nan,
        "ci_high": math.nan,
        "method": None,
        "resamples": 0,
        "mc_error_low": math.nan,
        "mc_error_high": math.nan,
        "arms": per_arm,
    }
    if min(x.size for x in xs.values()) < MIN_SEEDS:
        return out
    dists = []
    for name, x in xs.items():
        d = _exact_distribution(x, estimator)
        if d is None:
            break
        dists.append(_scaled(d, weights[name]))
    bounds = _exact_sum_bounds(dists, level) if len(dists) == len(xs) else None
    if bounds is not None:
        out.update(ci_low=bounds[0], ci_high=bounds[1], method="exact")
        out.update(mc_error_low=0.0, mc_error_high=0.0)
        out["resamples"] = math.prod(_n_multisets(x.size) for x in xs.values())
        return out
    rng = np.random.default_rng(seed)
    boot = np.zeros(0)
    draw = n_boot
    while True:
        batch = np.zeros(draw)
        for name, x in xs.items():
            idx = rng.integers(0, x.size, size=(draw, x.size))
            batch += weights[name] * _estimate(x[idx], estimator)
        boot = np.concatenate([boot, batch])
        lo, hi, err_lo, err_hi = _mc_bounds(boot, level)
        close = any(
            abs(bound - b) <= CLEAR_FACTOR * err
            for bound, err in ((lo, err_lo), (hi, err_hi))
            for b in boundaries
        )
        if not close or boot.size >= MAX_BOOT_FACTOR * n_boot:
            break
        draw = boot.size  # double the resamples
    out.update(ci_low=lo, ci_high=hi, method="monte-carlo", resamples=int(boot.size))
    out.update(mc_error_low=err_lo, mc_error_high=err_hi)
    return out


def above(bound: float, boundary: float, err: float, tol: float) -> bool | None:
    """Is the CI bound above the boundary? None where it lies within CLEAR_FACTOR
    Monte-Carlo errors of it (far enough that no bootstrap seed would plausibly put it on the
    other side); a bound within `tol` of the boundary is on it (not above). The verdicts'
    one comparison of a CI bound with a decision boundary."""
    err = CLEAR_FACTOR * err
    d = bound - boundary
    if d > err + tol:
        return True
    if err > 0 and d >= -err - tol:
        return None
    return False


def seeds_to_decide(arms: Mapping[str, Mapping[str, float]], distance: float) -> int | None:
    """Seeds per arm at which the 95% CI half-width, extrapolated from the observed per-arm SDs,
    drops below `distance` (how far the observed effect lies from the decision boundary).

    Half-width(n) = z * sqrt(sum_a w_a^2 sd_a^2 / n), so n = ceil((z * sigma_c / distance)^2).
    This is a CI-width rule (about 50% power at the observed effect; 80% power needs roughly
    twice as many). None where it cannot be computed: an arm with fewer than 2 seeds, or the
    effect sitting exactly on the boundary.
    """
    if distance <= 0 or not math.isfinite(distance):
        return None
    var = 0.0
    for a in arms.values():
        if not math.isfinite(a["sd"]):
            return None
        var += a["weight"] ** 2 * a["sd"] ** 2
    if var == 0.0:
        return 2
    return max(2, math.ceil((Z95 * math.sqrt(var) / distance) ** 2))


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean (rliable's `aggregate_iqm`): `trim_mean(x, 0.25)` over all values
    pooled (a (runs, tasks) matrix is flattened), NaN dropped."""
    x = np.asarray(values, dtype=float).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan
    return float(_sps.trim_mean(x, 0.25))


def probability_of_improvement(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *, tol: float = 0.0
) -> float:
    """P(X > Y) as rliable defines it: per task (column; a 1-D input is one task) the mean
    over all (x, y) pairs of [x > y] + 0.5 [x = y] (Mann-Whitney U / (n_x n_y)), averaged over
    tasks. 0.5: no difference; 1: every run of X beats every run of Y. Values within `tol` of
    each other tie (rliable: 0)."""
    return float(_poi_batch(_as_tasks(x)[None], _as_tasks(y)[None], tol)[0])


def bootstrap_poi(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
    tol: float = 0.0,
) -> tuple[float, float, float]:
    """(P(X > Y), CI low, CI high): runs of X and of Y resampled independently within each
    task (rliable's StratifiedIndependentBootstrap); every pair of resamples where they can be
    enumerated, else seeded Monte-Carlo percentiles. NaN bounds when either has fewer than
    MIN_SEEDS runs."""
    xs, ys = _as_tasks(x), _as_tasks(y)
    point = float(_poi_batch(xs[None], ys[None], tol)[0])
    if min(xs.shape[0], ys.shape[0]) < MIN_SEEDS:
        return point, math.nan, math.nan
    mx, my = _multisets(xs.shape[0]), _multisets(ys.shape[0])
    if mx is not None and my is not None and mx[1].size * my[1].size <= EXACT_LIMIT:
        # Every pair of resamples: P = c_x S c_y / (n_x n_y), S the pairwise score matrix and
        # c the resamples' counts; the tasks are independent terms of a mean.
        (ix, px), (iy, py) = mx, my
        cx, cy = _counts(ix, xs.shape[0]), _counts(iy, ys.shape[0])
        tasks = xs.shape[1]
        dists = []
        for t in range(tasks):
            gt = xs[:, t, None] > ys[None, :, t] + tol
            eq = np.abs(xs[:, t, None] - ys[None, :, t]) <= tol
            pair = cx @ (gt + 0.5 * eq) @ cy.T / (xs.shape[0] * ys.shape[0] * tasks)
            dists.append(_distinct(pair.ravel(), np.outer(px, py).ravel()))
        bounds = _exact_sum_bounds(dists, level)
        if bounds is not None:
            return point, bounds[0], bounds[1]
    rng = np.random.default_rng(seed)
    bx = _resample_within_tasks(xs, n_boot, rng)
    by = _resample_within_tasks(ys, n_boot, rng)
    lo, hi = _percentiles(_poi_batch(bx, by, tol), level)
    return point, lo, hi


def stratified_bootstrap_iqm(
    scores: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(IQM, CI low, CI high) of a (runs, tasks) score matrix (a 1-D input is one task): runs
    resampled with replacement within each task (rliable's StratifiedBootstrap), the IQM over
    all runs and tasks pooled; every combination of the tasks' resamples where they can be
    enumerated, else seeded Monte-Carlo percentiles. NaN bounds for fewer than MIN_SEEDS
    runs."""
    m = _as_tasks(scores)
    point = iqm(m)
    runs, tasks = m.shape
    if runs < MIN_SEEDS:
        return point, math.nan, math.nan
    multisets = _multisets(runs)
    if multisets is not None and multisets[1].size ** tasks <= EXACT_LIMIT:
        idx, p = multisets
        # Every combination of one resample per task: (combinations, runs x tasks) pooled.
        combos = np.array(list(itertools.product(range(p.size), repeat=tasks)), dtype=np.intp)
        pooled = np.concatenate([m[idx[combos[:, t]], t] for t in range(tasks)], axis=1)
        probs = np.prod(p[combos], axis=1)
        v, w = _distinct(_estimate(pooled, "iqm"), probs)
        lo, hi = _weighted_bounds(v[:, None], w, level)
        return point, float(lo[0]), float(hi[0])
    boot = _resample_within_tasks(m, n_boot, np.random.default_rng(seed))
    lo, hi = _percentiles(_estimate(boot.reshape(n_boot, -1), "iqm"), level)
    return point, lo, hi


def normalised_auc(
    steps: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, budget: float
) -> float:
    """Area under one run's evaluation curve over [0, budget] divided by the budget: the
    curve's average height, in the metric's units (a run at a constant c scores c).

    Trapezoids between evaluations (at their env steps, clipped to [0, budget]); before the
    first evaluation the curve holds the first value, after the last one it holds the last
    value up to the budget (the trainer evaluates last just below the budget). NaN values
    are dropped; NaN if none is left or the budget is not positive.
    """
    t = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    keep = ~(np.isnan(t) | np.isnan(v))
    t, v = t[keep], v[keep]
    if t.size == 0 or not budget > 0:
        return math.nan
    order = np.argsort(t, kind="stable")
    t, v = np.clip(t[order], 0.0, float(budget)), v[order]
    t = np.concatenate([[0.0], t, [float(budget)]])
    v = np.concatenate([[v[0]], v, [v[-1]]])
    area = float(np.sum(np.diff(t) * (v[1:] + v[:-1]) / 2.0))
    return area / float(budget)


def steps_to_threshold(
    steps: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    threshold: float,
    *,
    censor_at: float,
    tol: float = COMPARISON_TOL,
) -> tuple[float, bool]:
    """(env steps of the first evaluation whose value exceeds `threshold` by more than `tol`,
    True), or (`censor_at`, False) when no evaluation does: a value within `tol` of the
    threshold is the threshold (floating-point sums), and a run that never reaches it is kept,
    censored at a value later than any evaluation (the report uses budget + one evaluation
    interval), never dropped."""
    t = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    order = np.argsort(t, kind="stable")
    hit = np.flatnonzero(v[order] > threshold + tol)
    if hit.size == 0:
        return float(censor_at), False
    return float(t[order][hit[0]]), True


def basin_levels(env: str) -> tuple[float, float] | None:
    """(avoid return, tolerance) of `env`'s basins from its registry entry: the team return of
    an episode without capture or penalty (n_agents x max_steps x step_cost, -4 for the
    paper's 4 agents) and the half-width of the avoid band (0.25 per agent); None for an env
    without basins or not registered."""
    if env not in ENV_NAMES or not env_spec(env).basins:
        return None
    spec = env_spec(env)
    return float(spec.avoid_return), float(spec.basin_tol)


def classify_env_basin(env: str, final_return: float) -> str | None:
    """`classify_basin` at `env`'s own levels; None for an env without basins."""
    levels = basin_levels(env)
    if levels is None:
        return None
    return classify_basin(final_return, avoid_return=levels[0], tol=levels[1])


def classify_basin(
    final_return: float,
    *,
    avoid_return: float = PREDATOR_PREY_AVOID_RETURN,
    tol: float = BASIN_TOL,
) -> str:
    """PredatorPrey basin of one run from its final team return (the defaults are the paper's
    4-agent levels; `classify_env_basin` uses an env's own).

    'avoid': within `tol` of the step-cost-only return (agents keep away from the prey, no
    penalty, no capture), the band's edges included up to COMPARISON_TOL; 'capture': above
    that band (one capture is +5 per agent, so a run capturing in a few percent of episodes
    clears it); 'penalised': below it (lone-predator penalties).
    """
    if math.isnan(final_return):
        return "nan"
    if final_return > avoid_return + tol + COMPARISON_TOL:
        return "capture"
    if final_return < avoid_return - tol - COMPARISON_TOL:
        return "penalised"
    return "avoid"


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {ESTIMATORS}, got {estimator!r}")


def _estimate(samples: np.ndarray, estimator: str) -> np.ndarray:
    """The estimator over axis 1 of a (resamples, seeds, ...) array."""
    if estimator == "iqm":
        return _sps.trim_mean(samples, 0.25, axis=1)
    return samples.mean(axis=1)


def _n_multisets(n: int) -> int:
    return math.comb(2 * n - 1, n)


def _multisets(n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Every distinct resample of n seeds as sorted seed indices (multisets, n columns) and its
    multinomial probability n! / (prod c_i! n^n); None above EXACT_LIMIT."""
    if n < 1 or _n_multisets(n) > EXACT_LIMIT:
        return None
    return _all_multisets(n)


@functools.lru_cache(maxsize=16)
def _all_multisets(n: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.array(list(itertools.combinations_with_replacement(range(n), n)), dtype=np.intp)
    c = _counts(idx, n)
    logp = _spf.gammaln(n + 1) - _spf.gammaln(c + 1).sum(axis=1) - n * math.log(n)
    p = np.exp(logp)
    for a in (idx, p):
        a.setflags(write=False)  # cached: shared by every caller
    return idx, p


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """(resamples, n) counts of each seed in each resample of seed indices."""
    c = np.zeros((idx.shape[0], n))
    np.add.at(c, (np.arange(idx.shape[0])[:, None], idx), 1.0)
    return c


def _exact_distribution(x: np.ndarray, estimator: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(distinct values, probabilities) of the estimator over every resample of x; None where
    there are too many."""
    multisets = _multisets(x.size)
    if multisets is None:
        return None
    idx, p = multisets
    return _distinct(_estimate(x[idx], estimator), p)


def _distinct(values: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values with their summed probabilities."""
    v, inv = np.unique(values, return_inverse=True)
    return v, np.bincount(inv.ravel(), weights=probs, minlength=v.size)


def _scaled(d: tuple[np.ndarray, np.ndarray], w: float) -> tuple[np.ndarray, np.ndarray]:
    v, p = d
    return (w * v, p) if w >= 0 else (w * v[::-1], p[::-1])


def _halves(sizes: list[int]) -> list[list[int]] | None:
    """Indices of the distributions to enumerate together: all of them where their product
    fits EXACT_LIMIT, else the split into two groups with the smallest larger product; None
    where even that exceeds it."""
    if math.prod(sizes) <= EXACT_LIMIT:
        return [list(range(len(sizes)))]
    best = None
    for mask in range(1, 2 ** (len(sizes) - 1)):
        g = [[i for i in range(len(sizes)) if (mask >> i & 1) == side] for side in (1, 0)]
        cost = max(math.prod(sizes[i] for i in part) for part in g)
        if best is None or cost < best[0]:
            best = (cost, g)
    return best[1] if best is not None and best[0] <= EXACT_LIMIT else None


def _enumerate_sum(dists: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    v, p = np.zeros(1), np.ones(1)
    for w, q in dists:
        v, p = _distinct((v[:, None] + w[None, :]).ravel(), np.outer(p, q).ravel())
    return v, p


def _exact_sum_bounds(
    dists: list[tuple[np.ndarray, np.ndarray]], level: float
) -> tuple[float, float] | None:
    """CI bounds of the sum of independent discrete variables (each (sorted values,
    probabilities)), or None where its halves cannot be enumerated."""
    groups = _halves([d[0].size for d in dists])
    if groups is None:
        return None
    alpha = (1.0 - level) / 2.0
    parts = [_enumerate_sum([dists[i] for i in g]) for g in groups]
    neg = [(-v[::-1], p[::-1]) for v, p in parts]
    if len(parts) == 1:
        return _lower_quantile(*parts[0], alpha), -_lower_quantile(*neg[0], alpha)
    return _lower_quantile_sum(*parts, alpha), -_lower_quantile_sum(*neg, alpha)


def _lower_quantile(v: np.ndarray, p: np.ndarray, alpha: float) -> float:
    """The smallest value t with P(T <= t) >= alpha (v sorted)."""
    i = int(np.searchsorted(np.cumsum(p), alpha - _PROB_TOL, side="left"))
    return float(v[min(i, v.size - 1)])


def _lower_quantile_sum(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], alpha: float
) -> float:
    """The smallest t with P(A + B <= t) >= alpha for independent discrete A, B (sorted): the
    CDF is bisected to a relative width of 1e-12, then the smallest attainable sum a_i + b_j
    above the interval's low end is taken."""
    (av, ap), (bv, bp) = a, b
    cdf_b = np.concatenate([[0.0], np.cumsum(bp)])

    def reaches(t: float) -> bool:
        return float(ap @ cdf_b[np.searchsorted(bv, t - av, side="right")]) >= alpha - _PROB_TOL

    lo, hi = float(av[0] + bv[0]), float(av[-1] + bv[-1])
    if reaches(lo):
        return lo
    for _ in range(200):  # P(A + B <= lo) < alpha <= P(A + B <= hi)
        mid = 0.5 * (lo + hi)
        if hi - lo <= 1e-12 * (1.0 + abs(lo) + abs(hi)) or not lo < mid < hi:
            break
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    j = np.searchsorted(bv, lo - av, side="right")
    ok = j < bv.size
    return float(np.min(av[ok] + bv[j[ok]]))


def _weighted_bounds(
    values: np.ndarray, p: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per column of (resamples, columns) values with resample probabilities p: the exact
    quantile bounds (see the module docstring)."""
    alpha = (1.0 - level) / 2.0
    order = np.argsort(values, axis=0, kind="stable")
    v = np.take_along_axis(values, order, axis=0)
    cum = np.cumsum(p[order], axis=0)
    tail = np.cumsum(p[order][::-1], axis=0)  # P(T >= v) from the top
    i_lo = np.argmax(cum >= alpha - _PROB_TOL, axis=0)
    i_hi = v.shape[0] - 1 - np.argmax(tail >= alpha - _PROB_TOL, axis=0)
    cols = np.arange(v.shape[1])
    return v[i_lo, cols], v[i_hi, cols]


def _mc_bounds(samples: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """Percentile bounds of Monte-Carlo samples and each one's Monte-Carlo error: the larger
    half-width of the 95% binomial interval of the sample quantile."""
    s = np.sort(samples)
    n = s.size
    alpha = (1.0 - level) / 2.0
    lo, hi = _percentiles(s, level)
    half = Z95 * math.sqrt(n * alpha * (1.0 - alpha))
    errs = []
    for q, a in ((lo, alpha), (hi, 1.0 - alpha)):
        k = a * (n - 1)
        i0, i1 = max(0, math.floor(k - half)), min(n - 1, math.ceil(k + half))
        errs.append(float(max(q - s[i0], s[i1] - q)))
    return lo, hi, errs[0], errs[1]


def _as_tasks(x) -> np.ndarray:
    """A (runs, tasks) float matrix: a 1-D input is one task; NaN runs dropped from 1-D."""
    m = np.asarray(x, dtype=float)
    if m.ndim == 1:
        m = m[~np.isnan(m)][:, None]
    if m.ndim != 2 or m.shape[0] == 0:
        raise ValueError(f"expected a non-empty (runs, tasks) matrix, got shape {m.shape}")
    return m


def _resample_within_tasks(m: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, runs, tasks): every task's runs resampled with replacement on their own."""
    runs, tasks = m.shape
    idx = rng.integers(0, runs, size=(n_boot, runs, tasks))
    return m[idx, np.arange(tasks)[None, None, :]]


def _poi_batch(x: np.ndarray, y: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """P(X > Y) for each of a batch: x (b, n, tasks), y (b, m, tasks) -> (b,)."""
    d = x[:, :, None, :] - y[:, None, :, :]
    gt = (d > tol).mean(axis=(1, 2))
    eq = (np.abs(d) <= tol).mean(axis=(1, 2))
    return (gt + 0.5 * eq).mean(axis=1)


def _percentiles(samples: np.ndarray, level: float) -> tuple:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(samples, [100 * alpha, 100 * (1 - alpha)], axis=0)
    if np.ndim(lo) == 0:
        return float(lo), float(hi)
    return lo, hi
