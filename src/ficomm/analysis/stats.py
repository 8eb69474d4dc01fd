"""Statistics over seeds: seeded percentile-bootstrap CIs, the interquartile mean, the
seeds-needed extrapolation used by the replication report, and the PredatorPrey basins.

Every bootstrap takes an explicit `seed` and builds its own `np.random.default_rng(seed)`, so a
result never depends on which other statistics were computed before it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as _sps

N_BOOT = 10_000
Z95 = 1.959963984540054  # two-sided 95% normal quantile

# PredatorPrey (spec section 4): every agent pays -0.01 per step for 100 steps, and the team
# return sums 4 agents, so a team that never meets a prey ends at exactly -4. A capture is
# worth +5 per agent (+20 team), a lone-predator penalty -0.75 per agent (-3 team).
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


def bootstrap_contrast(
    arms: Mapping[str, Sequence[float]],
    weights: Mapping[str, float],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """A linear contrast sum_a w_a * mean(arm a), with arms resampled independently.

    Returns effect, CI (NaN where an arm has fewer than 2 seeds), per-arm n, mean and SD.
    """
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
            "sd": float(x.std(ddof=1)) if x.size > 1 else math.nan,
            "weight": float(w),
        }
        effect += w * x.mean()
        if x.size < 2:
            can_boot = False
            continue
        boot += w * x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
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
    """Interquartile mean over seeds (rliable style): the mean after trimming 25% per side."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan
    return float(_sps.trim_mean(x, 0.25))


def classify_basin(
    final_return: float,
    *,
    avoid_return: float = PREDATOR_PREY_AVOID_RETURN,
    tol: float = BASIN_TOL,
) -> str:
    """PredatorPrey basin of one run from its final team return.

    'avoid': within `tol` of the step-cost-only return (agents keep away from the prey, no
    penalty, no capture); 'capture': above that band (one capture is +20, so a run capturing in
    a few percent of episodes clears it); 'penalised': below it (lone-predator penalties).
    """
    if math.isnan(final_return):
        return "nan"
    if final_return > avoid_return + tol:
        return "capture"
    if final_return < avoid_return - tol:
        return "penalised"
    return "avoid"


def _percentiles(samples: np.ndarray, level: float) -> tuple:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(samples, [100 * alpha, 100 * (1 - alpha)], axis=0)
    if np.ndim(lo) == 0:
        return float(lo), float(hi)
    return lo, hi
