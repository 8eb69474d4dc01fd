"""Claim 1 asked of the messages: do the agents act on what they are told, and does it pay?

Reads the intervention columns that comm runs write into metrics.csv (ficomm/listening.py,
docs/training.md): at a run's final evaluation with interventions, the team return with every
agent's incoming messages swapped for another episode's minus its normal return, and the
fraction of its agent-steps whose greedy action the swap changes. Each is an IQM over seeds
with the report's exact (or Monte-Carlo) bootstrap CI (stats.bootstrap_contrast) and a
verdict:

- action change ("they listen"): supported where the CI lies above LISTEN_RATE (the swap
  changes more than 5% of their actions), contradicted where it lies below;
- return under the swap minus normal ("listening pays"): supported where the CI lies below 0
  (the swap costs return), contradicted where it lies above -margin (it costs less than the
  environment's basin tolerance: PredatorPrey, 1.0 for 4 agents), else inconclusive.

A configuration's listening verdict is supported where both are, contradicted where either
is, else inconclusive. Arms with fewer seeds than the report's minimum give "too few seeds".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ficomm.analysis import stats
from ficomm.envs import ENV_NAMES, env_spec

LISTEN_RATE = 0.05  # a swap that changes more of their greedy actions than this: they listen
SWAP_CHANGE = "intervene_swap_action_change"
# per-run columns of `listening_runs` <- metrics.csv columns at the final intervention row
RUN_COLUMNS = {
    "normal_return": "eval_return_mean",
    "swap_return": "intervene_swap_return_mean",
    "zero_return": "intervene_zero_return_mean",
    "swap_change": SWAP_CHANGE,
    "zero_change": "intervene_zero_action_change",
    "mi_action": "signal_action_mi",
    "mi_sight": "signal_sight_mi",
}
KEYS = ["env", "backend", "method", "hidden", "variant", "seed"]
STATISTICS = {
    "swap_change": "action change under the swap (fraction of agent-steps)",
    "swap_gain": "team return under the swap minus normal",
}


def listening_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run that recorded interventions: its final intervention evaluation's
    normal and intervened returns, action-change rates and signalling, and `swap_gain` =
    swap_return - normal_return (likewise `zero_gain`)."""
    if SWAP_CHANGE not in df:
        return pd.DataFrame(columns=[*KEYS, "env_steps", *RUN_COLUMNS, "swap_gain", "zero_gain"])
    rows = df[df[SWAP_CHANGE].notna()].sort_values("env_steps")
    last = rows.groupby(KEYS, dropna=False, sort=False).tail(1)
    out = last[KEYS + ["env_steps"]].copy()
    for name, col in RUN_COLUMNS.items():
        out[name] = last[col].astype(float) if col in last else math.nan
    out["swap_gain"] = out["swap_return"] - out["normal_return"]
    out["zero_gain"] = out["zero_return"] - out["normal_return"]
    return out.reset_index(drop=True)


def listening_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Every evaluation with interventions: how listening develops over training."""
    if SWAP_CHANGE not in df:
        return pd.DataFrame(columns=[*KEYS, "env_steps", "swap_change", "swap_gain"])
    rows = df[df[SWAP_CHANGE].notna()]
    out = rows[KEYS + ["env_steps"]].copy()
    if "eval_interval" in rows:  # the nominal step, so that seeds line up (the last: budget)
        step = rows["env_steps"] // rows["eval_interval"] * rows["eval_interval"]
        out["env_steps"] = step.where(rows["env_steps"] < rows["budget"], rows["budget"])
    out["swap_change"] = rows[SWAP_CHANGE].astype(float)
    out["swap_gain"] = rows["intervene_swap_return_mean"] - rows["eval_return_mean"]
    return out.reset_index(drop=True)


def _margin(env: str) -> float:
    spec = env_spec(env) if env in ENV_NAMES else None
    return float(spec.basin_tol) if spec is not None and spec.basin_tol else 0.0


def _statistic(values: np.ndarray, stat: str, env: str, *, n_boot: int, seed: int) -> dict:
    """IQM, CI and verdict of one listening statistic over an arm's seeds."""
    res = stats.bootstrap_contrast(
        {"x": values}, {"x": 1.0}, estimator="iqm", n_boot=n_boot, seed=seed
    )
    lo, hi = res["ci_low"], res["ci_high"]
    err_lo, err_hi, tol = res["mc_error_low"], res["mc_error_high"], stats.COMPARISON_TOL
    out = {
        "statistic": stat,
        "title": STATISTICS[stat],
        "n": int(values.size),
        "iqm": res["effect"],
        "ci_low": lo,
        "ci_high": hi,
        "ci_method": res["method"],
    }
    if stat == "swap_change":
        supported = stats.above(lo, LISTEN_RATE, err_lo, tol)
        contradicted = stats.above(LISTEN_RATE, hi, err_hi, tol)
        out["boundary"] = LISTEN_RATE
    else:
        margin = _margin(env)
        supported = stats.above(0.0, hi, err_hi, tol)
        contradicted = stats.above(lo, -margin, err_lo, tol)
        out["boundary"] = -margin
    out["verdict"] = (
        "supported"
        if supported
        else "contradicted"
        if contradicted
        else "borderline"
        if supported is None or contradicted is None
        else "inconclusive"
    )
    return out


def combine(verdicts: list[str]) -> str:
    """One verdict from several: contradicted if any is, supported if all are."""
    if "too few seeds" in verdicts:
        return "too few seeds"
    if "contradicted" in verdicts:
        return "contradicted"
    if all(v == "supported" for v in verdicts):
        return "supported"
    return "borderline" if "borderline" in verdicts else "inconclusive"


def evaluate_listening(
    per_run: pd.DataFrame,
    arms: list[tuple[str, str, int, bool]],
    *,
    min_seeds: int,
    n_boot: int = stats.N_BOOT,
    seed: int = 0,
) -> list[dict]:
    """The listening test of each (env, method, hidden, primary) arm: its statistics and
    verdict, "untested" where no run of it recorded interventions."""
    needs = max(min_seeds, stats.MIN_SEEDS)
    out = []
    for env, method, hidden, primary in arms:
        runs = per_run[
            (per_run["env"] == env) & (per_run["method"] == method) & (per_run["hidden"] == hidden)
        ]
        row = {"env": env, "method": method, "hidden": hidden, "primary": primary, "n": len(runs)}
        if runs.empty:
            row.update(verdict="untested", statistics=[], note="no run recorded interventions")
        elif len(runs) < needs:
            row.update(
                verdict="too few seeds",
                statistics=[],
                note=f"{len(runs)} runs with interventions (a verdict needs {needs})",
            )
        else:
            row["statistics"] = [
                _statistic(runs[s].to_numpy(float), s, env, n_boot=n_boot, seed=seed)
                for s in STATISTICS
            ]
            row["verdict"] = combine([s["verdict"] for s in row["statistics"]])
            row["mi_action"] = float(stats.iqm(runs["mi_action"].to_numpy(float)))
            row["zero_change"] = float(stats.iqm(runs["zero_change"].to_numpy(float)))
        row["sentence"] = describe(row)
        out.append(row)
    return out


def describe(row: dict) -> str:
    """What the data show for one arm, in plain words."""
    who = f"{row['method']} at H {row['hidden']}"
    if not row["statistics"]:
        return f"{who}: {row['note']}."
    change, gain = (next(s for s in row["statistics"] if s["statistic"] == k) for k in STATISTICS)

    pct = [100 * change[k] for k in ("iqm", "ci_low", "ci_high")]
    facts = (
        "swapping each agent's incoming messages for another episode's changes "
        f"{pct[0]:.1f}% [{pct[1]:.1f}, {pct[2]:.1f}] of its greedy actions and the team return "
        f"by {gain['iqm']:+.2f} [{gain['ci_low']:+.2f}, {gain['ci_high']:+.2f}]"
    )
    if change["verdict"] == "contradicted":
        meaning = "the agents' messages change almost nothing they do"
    elif change["verdict"] == "supported" and gain["verdict"] == "supported":
        meaning = "the agents act on their messages, and the messages pay"
    elif change["verdict"] == "supported" and gain["verdict"] == "contradicted":
        meaning = "the agents act on their messages, but what they hear does not change the return"
    elif change["verdict"] == "supported":
        meaning = "the agents act on their messages; whether that pays is not decided"
    else:
        meaning = "whether the agents act on their messages is not decided"
    return f"{who}: {facts}: {meaning}."
