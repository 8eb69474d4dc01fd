"""Statistics over seeds: seeded percentile-bootstrap CIs, the interquartile mean, the
probability of improvement, per-run learning-curve summaries (normalised area under the curve,
env steps to a threshold), the seeds-needed extrapolation used by the replication report, and
the PredatorPrey basins.

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

Every bootstrap takes an explicit `seed` and builds its own `np.random.default_rng(seed)`, so a
result never depends on which other statistics were computed before it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as _sps

from ficomm.envs import ENV_NAMES, env_spec  # the registry only: no backend is imported

N_BOOT = 10_000
Z95 = 1.959963984540054  # two-sided 95% normal quantile

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
    """Percentile-bootstrap CI of the mean over seeds. NaN bounds for fewer than 2 values."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    return _percentiles(means, level)


def bootstrap_ci_columns(
    matrix: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column bootstrap CI of the mean of a (seeds, points) matrix, NaN = missing.

    Columns sharing the same set of present seeds share one resampling (learning curves:
    every evaluation point of one configuration), which keeps 10,000 resamples cheap.
    """
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
        if rows.size < 2:
            continue
        sub = m[np.ix_(rows, cols)]
        idx = rng.integers(0, rows.size, size=(n_boot, rows.size))
        means = sub[idx].mean(axis=1)  # (n_boot, len(cols))
        lo[cols], hi[cols] = _percentiles(means, level)
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
) -> dict:
    """A linear contrast sum_a w_a * estimator(arm a), with every arm's runs resampled with
    replacement independently of the other arms (a stratified bootstrap, one stratum per arm);
    `estimator` is "mean" or "iqm".

    Returns effect, percentile CI (NaN where an arm has fewer than 2 seeds), and per arm n,
    mean, iqm, SD and weight.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {ESTIMATORS}, got {estimator!r}")
    rng = np.random.default_rng(seed)
    effect = 0.0
    boot = np.zeros(n_boot)
    can_boot = True
    per_arm = {}
    for name, w in weights.items():
        x = np.asarray(arms[name], dtype=float)
        x = x[~np.isnan(x)]
        if x.size == 0:
            raise ValueError(f"arm {name!r} has no values")
        per_arm[name] = {
            "n": int(x.size),
            "mean": float(x.mean()),
            "iqm": iqm(x),
            "sd": float(x.std(ddof=1)) if x.size > 1 else math.nan,
            "weight": float(w),
        }
        effect += w * per_arm[name][estimator]
        if x.size < 2:
            can_boot = False
            continue
        boot += w * _estimate(x[rng.integers(0, x.size, size=(n_boot, x.size))], estimator)
    lo, hi = _percentiles(boot, level) if can_boot else (math.nan, math.nan)
    return {"effect": float(effect), "ci_low": lo, "ci_high": hi, "arms": per_arm}


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
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
) -> float:
    """P(X > Y) as rliable defines it: per task (column; a 1-D input is one task) the mean
    over all (x, y) pairs of [x > y] + 0.5 [x = y] (Mann-Whitney U / (n_x n_y)), averaged over
    tasks. 0.5: no difference; 1: every run of X beats every run of Y."""
    return float(_poi_batch(_as_tasks(x)[None], _as_tasks(y)[None])[0])


def bootstrap_poi(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(P(X > Y), CI low, CI high): runs of X and of Y resampled independently within each
    task (rliable's StratifiedIndependentBootstrap), percentile CI. NaN bounds when either
    has fewer than 2 runs."""
    xs, ys = _as_tasks(x), _as_tasks(y)
    point = float(_poi_batch(xs[None], ys[None])[0])
    if xs.shape[0] < 2 or ys.shape[0] < 2:
        return point, math.nan, math.nan
    rng = np.random.default_rng(seed)
    bx = _resample_within_tasks(xs, n_boot, rng)
    by = _resample_within_tasks(ys, n_boot, rng)
    lo, hi = _percentiles(_poi_batch(bx, by), level)
    return point, lo, hi


def stratified_bootstrap_iqm(
    scores: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(IQM, CI low, CI high) of a (runs, tasks) score matrix (a 1-D input is one task): runs
    resampled with replacement within each task (rliable's StratifiedBootstrap), the IQM over
    all runs and tasks pooled, percentile CI. NaN bounds for fewer than 2 runs."""
    m = _as_tasks(scores)
    point = iqm(m)
    if m.shape[0] < 2:
        return point, math.nan, math.nan
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
) -> tuple[float, bool]:
    """(env steps of the first evaluation whose value exceeds `threshold`, True), or
    (`censor_at`, False) when no evaluation does: a run that never reaches the threshold is
    kept, censored at a value later than any evaluation (the report uses budget + one
    evaluation interval), never dropped."""
    t = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    order = np.argsort(t, kind="stable")
    hit = np.flatnonzero(v[order] > threshold)
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
    penalty, no capture); 'capture': above that band (one capture is +5 per agent, so a run
    capturing in a few percent of episodes clears it); 'penalised': below it (lone-predator
    penalties).
    """
    if math.isnan(final_return):
        return "nan"
    if final_return > avoid_return + tol:
        return "capture"
    if final_return < avoid_return - tol:
        return "penalised"
    return "avoid"


def _estimate(samples: np.ndarray, estimator: str) -> np.ndarray:
    """The estimator of every row of a (n_boot, n) matrix."""
    if estimator == "iqm":
        return _sps.trim_mean(samples, 0.25, axis=1)
    return samples.mean(axis=1)


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


def _poi_batch(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) for each of a batch: x (b, n, tasks), y (b, m, tasks) -> (b,)."""
    gt = (x[:, :, None, :] > y[:, None, :, :]).mean(axis=(1, 2))
    eq = (x[:, :, None, :] == y[:, None, :, :]).mean(axis=(1, 2))
    return (gt + 0.5 * eq).mean(axis=1)


def _percentiles(samples: np.ndarray, level: float) -> tuple:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(samples, [100 * alpha, 100 * (1 - alpha)], axis=0)
    if np.ndim(lo) == 0:
        return float(lo), float(hi)
    return lo, hi
