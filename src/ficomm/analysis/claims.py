"""The replication report: each claim of the paper (docs/analysis.md) tested on the aggregated
results, on the learning curves as well as on final performance, with effect sizes,
stratified-bootstrap CIs and verdicts.

The rules are `VERDICT_RULES` below (also the report's Method section).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import ficomm
from ficomm.analysis import listening, stats
from ficomm.analysis.aggregate import (
    DEFAULT_HIDDEN,
    DEFAULT_LAST_K,
    HIDDEN_SIZES,
    AnalysisInputError,
    configuration_order,
    env_title,
    main_grid,
    primary_metric,
)
from ficomm.envs import ENV_NAMES, PENALTY_FAMILY, env_spec

# How claims are tested and decided: runtime data (the report prints it), so a constant, not
# the module docstring (which `python -OO` strips).
VERDICT_RULES = """\
Every claim is operationalised as one or more contrasts between configurations (arms: method
and hidden size in one env and backend). Each contrast is computed on three per-run statistics
of the env's metric (PredatorPrey team return, 3s_vs_5z test win rate):

auc (decides the verdict):
    the area under the run's evaluation curve over [0, budget] divided by the budget (its
    average height over training, in the metric's units): how fast a method learns and how high
    it gets, from every evaluation of the run.
final:
    the mean of the run's last K evaluations.
threshold_steps:
    env steps to the first evaluation above the env's threshold (lower is better); a run that
    never gets there is kept, censored at budget + one evaluation interval.

For each, the effect is sum_a w_a * IQM_a over the arms (IQM: the interquartile mean over the
arm's seeds, rliable's definition), its 95% CI comes from a stratified bootstrap (seeds
resampled with replacement within each arm independently), exact wherever the resamples can be
enumerated (every multiset of an arm's seeds weighted by its multinomial probability, and the
contrast's product distribution: always for arms of 3 to 5 seeds; `stats`), so that it depends
on no seed; otherwise Monte-Carlo with each bound's error estimated. Two-arm contrasts add the probability of improvement
P(A better than B) with its CI (reported, never deciding). The verdict is:

superiority (A should be better):
    supported if the CI excludes 0 on the better side (auc, final: CI low > 0; threshold_steps:
    CI high < 0); contradicted if it excludes 0 on the other side; else inconclusive.
equivalence (|effect| should be below a stated margin; threshold_steps: 10% of the budget):
    supported if the CI lies inside (-margin, margin); contradicted if it lies entirely
    outside; else inconclusive (also when both arms' IQM is below the contrast's floor, or no
    run reached the threshold: then equal values say nothing).
A bound within the comparison tolerance of a boundary is on it (returns: 1e-6 of the reward
unit 0.01; env steps: 0.5), so it excludes nothing. A Monte-Carlo bound within 3 of its
Monte-Carlo errors of a boundary makes the contrast borderline (the bootstrap's seed could
decide it), never supported or contradicted. An arm with fewer than `min_seeds` seeds (at least
3) gives the verdict "too few seeds" with the counts, and no CI below 3 seeds; an arm without
runs makes the contrast untested.
An inconclusive contrast says which way its effect points (`decides_toward`: supported, or
contradicted, "against the claim") and reports `seeds_to_decide` in that direction only: the
seeds per arm at which the CI half-width, extrapolated from the observed per-arm SDs, falls
below the observed distance from the decision boundary (`stats.seeds_to_decide`; at least one
more than now and `min_seeds`; an approximation for the IQM, whose spread over seeds is close
to the mean's at these sizes).
A claim's verdict combines its primary contrasts' auc verdicts: untested if all are;
contradicted if any is; supported if all are; borderline if a borderline contrast could
contradict it, or could support it while all others are supported; too few seeds if some have
too few and none is inconclusive; else inconclusive. Its seeds to decide: against the claim
(the fewest of the contrasts pointing against it) if any does, else for it (the most among the
undecided). Each claim names its untested primary contrasts and says whether it can still
become supported: not while any is untested, contradicted or points against it. The same
combination of the final and threshold_steps verdicts is reported beside it. Secondary
contrasts (other hidden sizes, the other env) are reported, not counted.

Claims about communication itself (claim 1, and the penalty study's claim 8) are decided by the
listening test on the messages instead (`ficomm.analysis.listening`: does swapping the
messages an agent gets change what it does, and does that cost return?); their AUC contrasts
stay beside it, labelled as what they measure: how fast runs leave the penalised start.

Why the AUC decides: with the paper's penalty (-0.75) most PredatorPrey runs settle in the
prey-avoidance basin (team return -4.0), so final returns tie at -4 across methods while the
methods differ in how fast they leave the penalised start and how many seeds escape the
basin; the AUC sees both, uses all of a run's evaluations (not the last 10) and is defined for
every run, whereas steps to a threshold are censored for every run that never escapes.
Final performance stays beside it (it is what the paper's abstract states), as do the basin
counts per configuration and runs left out of the verdicts.
"""

DEFAULT_MIN_SEEDS = 3
PAPER_ENVS = ("predator_prey", "3s_vs_5z")
# Claim 4's equivalence margin on the 3s_vs_5z test win rate: 10 percentage points. Below
# FLOOR both arms barely win, and "no difference" would say nothing about communication.
WIN_RATE_MARGIN = 0.10
WIN_RATE_FLOOR = 0.05

# The per-run statistics every contrast is computed on, in report order; the first decides.
STATISTICS = ("auc", "final", "threshold_steps")
DECIDING_STATISTIC = "auc"
STATISTIC_TITLES = {
    "auc": "AUC (normalised area under the evaluation curve)",
    "final": "final performance",
    "threshold_steps": "env steps to threshold",
    "all": "all",
}
# Steps to threshold: which way is better, and the equivalence margin as a budget fraction.
LOWER_IS_BETTER = {"threshold_steps"}
STEPS_MARGIN_FRACTION = 0.10


# The threshold of `threshold_steps`, per (env, metric), stated here only: (value, meaning).
# A run reaches it at its first evaluation whose metric is strictly above the value. Every env
# with basins (PredatorPrey at each team size) uses the top of its avoid band.
def _basin_threshold(env: str) -> tuple[float, str]:
    avoid, tol = stats.basin_levels(env)
    return (
        avoid + tol,
        f"team return above the avoid basin ({avoid:.1f} + {tol:.1f}, the 'capture' basin): the "
        "first evaluation at which the team captures",
    )


THRESHOLDS: dict[tuple[str, str], tuple[float, str]] = {
    **{
        (e, "eval_return_mean"): _basin_threshold(e)
        for e in ENV_NAMES
        if stats.basin_levels(e) is not None
    },
    ("3s_vs_5z", "eval_win_rate"): (
        0.5,
        "test win rate above 0.5: the first evaluation that wins most of its episodes",
    ),
}


def threshold_for(env: str, metric: str) -> tuple[float, str] | None:
    """THRESHOLDS' entry, or for an env with basins registered later, its avoid band's top."""
    if (env, metric) in THRESHOLDS:
        return THRESHOLDS[(env, metric)]
    if metric == "eval_return_mean" and stats.basin_levels(env) is not None:
        return _basin_threshold(env)
    return None


_DECIDED_BY = (
    " Each contrast is an IQM difference over seeds; the verdict is decided by the normalised "
    "AUC, with final performance and steps to threshold reported beside it."
)


def _max_return(env: str, backend: str) -> float | None:
    """The backend's maximum team return (its registry entry); the secondary return-based
    check uses 10% of it."""
    b = env_spec(env).backends.get(backend) if env in ENV_NAMES else None
    return b.max_return if b else None


def _team_size(env: str) -> int:
    size = env_spec(env).team_size if env in ENV_NAMES else None
    if not size:
        raise AnalysisInputError(f"env: {env!r} has no team_size in its registry entry")
    return size


@dataclass(frozen=True)
class Contrast:
    """One comparison: arms name -> (method, hidden) in `env`, or (method, hidden, env) for an
    arm in another env of the same backend (team sizes); weights name -> w."""

    label: str
    env: str
    arms: dict[str, tuple]
    weights: dict[str, float]
    kind: str = "superiority"  # or "equivalence"
    margin: float | None = None
    metric: str | None = None  # None: the env's primary metric
    primary: bool = True
    floor: float | None = None  # equivalence only: uninformative when both arms are below
    # Return statistics (final, auc) divided by each arm's team size, so that arms of different
    # team sizes compare per agent (steps to threshold are left as they are).
    per_agent: bool = False

    def arm_env(self, name: str) -> str:
        return self.arms[name][2] if len(self.arms[name]) > 2 else self.env

    def arm_label(self, name: str) -> str:
        method, hidden = self.arms[name][:2]
        own = f"{self.arms[name][2]} " if len(self.arms[name]) > 2 else ""
        return f"{own}{method} H{hidden}"


@dataclass(frozen=True)
class Claim:
    id: int
    text: str
    operationalisation: str
    contrasts: list[Contrast] = field(default_factory=list)
    # (env, method, hidden, primary) arms of the listening test; where given, its primary
    # arms decide the claim and the contrasts are reported beside it
    listening: tuple[tuple[str, str, int, bool], ...] = ()


def _diff(a: tuple[str, int], b: tuple[str, int]) -> tuple[dict, dict]:
    return {"A": a, "B": b}, {"A": 1.0, "B": -1.0}


def _interaction(a1, a0, b1, b0) -> tuple[dict, dict]:
    """(a1 - a0) - (b1 - b0)."""
    arms = {"a1": a1, "a0": a0, "b1": b1, "b0": b0}
    return arms, {"a1": 1.0, "a0": -1.0, "b1": -1.0, "b0": 1.0}


def _listening_arms(env: str, hidden: tuple[int, ...]) -> tuple:
    """NPS+IQL+COMM (primary at the default H) and PS+IQL+COMM (the positive control)."""
    return tuple(
        (env, m, h, m == "NPS+IQL+COMM" and h == DEFAULT_HIDDEN)
        for m in ("NPS+IQL+COMM", "PS+IQL+COMM")
        for h in hidden
    )


def claims_for() -> list[Claim]:
    """The five claims (config/reference.yaml) with their contrasts (contrasts whose arms have
    no runs come out untested)."""
    pp, sm = "predator_prey", "3s_vs_5z"
    c1 = [
        Contrast(
            f"{pp} H{h}: NPS+IQL+COMM - NPS+IQL",
            pp,
            *_diff(("NPS+IQL+COMM", h), ("NPS+IQL", h)),
            primary=h == DEFAULT_HIDDEN,
        )
        for h in HIDDEN_SIZES
    ]
    c2 = [
        Contrast(
            f"{env} H{h}: {ps} - {nps}", env, *_diff((ps, h), (nps, h)), primary=h == DEFAULT_HIDDEN
        )
        for env in (pp, sm)
        for ps, nps in (("PS+IQL", "NPS+IQL"), ("PS+IQL+COMM", "NPS+IQL+COMM"))
        for h in HIDDEN_SIZES
    ]
    c3 = [
        Contrast(
            f"{env} H{h}: (PS+IQL+COMM - PS+IQL) - (NPS+IQL+COMM - NPS+IQL)",
            env,
            *_interaction(("PS+IQL+COMM", h), ("PS+IQL", h), ("NPS+IQL+COMM", h), ("NPS+IQL", h)),
            primary=env == pp and h == DEFAULT_HIDDEN,
        )
        for env in (pp, sm)
        for h in HIDDEN_SIZES
    ]
    c4 = [
        Contrast(
            f"{sm} H{h}: {m}+COMM - {m} (win rate, margin {WIN_RATE_MARGIN:g})",
            sm,
            *_diff((f"{m}+COMM", h), (m, h)),
            kind="equivalence",
            margin=WIN_RATE_MARGIN,
            primary=m == "PS+IQL",
            floor=WIN_RATE_FLOOR,
        )
        for m in ("PS+IQL", "NPS+IQL")
        for h in HIDDEN_SIZES
    ]
    c4 += [
        Contrast(
            f"{sm} H{h}: PS+IQL+COMM - PS+IQL (return, margin 10% of the max return)",
            sm,
            *_diff(("PS+IQL+COMM", h), ("PS+IQL", h)),
            kind="equivalence",
            margin=None,  # per backend, filled in by `evaluate_contrast`
            metric="eval_return_mean",
            primary=False,
        )
        for h in HIDDEN_SIZES
    ]
    c5 = [
        Contrast(
            f"{env}: ({m}+COMM - {m}) at H32 - ({m}+COMM - {m}) at H128",
            env,
            *_interaction((f"{m}+COMM", 32), (m, 32), (f"{m}+COMM", 128), (m, 128)),
            primary=env == pp,
        )
        for env in (pp, sm)
        for m in ("PS+IQL", "NPS+IQL")
    ]
    return [
        Claim(
            1,
            "Fully independent agents can learn to communicate: NPS+IQL+COMM beats NPS+IQL "
            "where communication matters (PredatorPrey).",
            f"Primary: the listening test of NPS+IQL+COMM at H {DEFAULT_HIDDEN} on PredatorPrey "
            "(at each run's final evaluation, swapping every agent's incoming messages for "
            "another episode's changes more than "
            f"{listening.LISTEN_RATE:.0%} of its greedy actions and lowers the team return); "
            "PS+IQL+COMM is the positive control and other hidden sizes are secondary. Beside "
            f"it: team return of NPS+IQL+COMM minus NPS+IQL at H {DEFAULT_HIDDEN} (its AUC "
            "measures how fast runs leave the penalised start, not whether anyone listens).",
            c1,
            listening=_listening_arms(pp, HIDDEN_SIZES),
        ),
        Claim(
            2,
            "Performance still lags behind parameter sharing (PS above NPS).",
            f"Both envs, H {DEFAULT_HIDDEN}, with and without COMM: PredatorPrey team return and "
            "3s_vs_5z win rate of PS minus NPS > 0 in all four contrasts. "
            "Other hidden sizes are secondary." + _DECIDED_BY,
            c2,
        ),
        Claim(
            3,
            "The effect of communication is more evident with parameter sharing.",
            f"PredatorPrey, H {DEFAULT_HIDDEN}: the COMM gain with PS minus the COMM gain with NPS "
            "(an interaction of 4 arms) > 0. 3s_vs_5z and other hidden sizes are secondary."
            + _DECIDED_BY,
            c3,
        ),
        Claim(
            4,
            "Communication is not always needed: in 3s_vs_5z it does not play an important "
            "role (the paper's Figure 5(a) PS+IQL vs 5(b) PS+IQL+COMM across hidden sizes).",
            f"3s_vs_5z, every H in {list(HIDDEN_SIZES)}: |win rate of PS+IQL+COMM minus "
            f"PS+IQL| < {WIN_RATE_MARGIN:g} (equivalence: the CI must lie inside the margin; "
            f"steps to threshold: {STEPS_MARGIN_FRACTION:.0%} of the budget); if both arms win "
            f"less than {WIN_RATE_FLOOR:g} the contrast is inconclusive. NPS and the return "
            "(margin 10% of the backend's max return) are secondary." + _DECIDED_BY,
            c4,
        ),
        Claim(
            5,
            "Network capacity must be considered together with communication: a larger "
            "hidden size can replace part of what communication gives.",
            "PredatorPrey, PS and NPS: the COMM gain (COMM minus no COMM, team return) "
            "at H 32 minus the COMM gain at H 128 > 0 (the gain shrinks as H grows). "
            "3s_vs_5z is secondary." + _DECIDED_BY,
            c5,
        ),
    ]


# The env family whose registry entries differ only in team size (beyond the paper).
SCALE_FAMILY = "predator_prey"


def team_sizes(family: str = SCALE_FAMILY) -> list[tuple[int, str]]:
    """(team size, env) of the registered envs of `family`, smallest team first."""
    return sorted(
        (env_spec(e).team_size, e)
        for e in ENV_NAMES
        if env_spec(e).family_name == family and env_spec(e).team_size
    )


def penalty_levels(family: str = PENALTY_FAMILY) -> list[tuple[float, str]]:
    """(lone-predator penalty, env) of the penalty study's registry entries, harshest first."""
    return sorted(
        (env_spec(e).penalty, e)
        for e in ENV_NAMES
        if env_spec(e).family_name == family and env_spec(e).penalty is not None
    )


def beyond_paper_claims() -> list[Claim]:
    """Questions the paper does not ask, tested like its claims and reported apart from them
    (they never change the paper's five verdicts)."""
    sizes = team_sizes()
    arm = ("NPS+IQL+COMM", DEFAULT_HIDDEN), ("NPS+IQL", DEFAULT_HIDDEN)
    c6 = [
        Contrast(f"{env} (team {n}) H{DEFAULT_HIDDEN}: NPS+IQL+COMM - NPS+IQL", env, *_diff(*arm))
        for n, env in sizes
    ]
    if len(sizes) > 1:
        (n0, small), (n1, large) = sizes[0], sizes[-1]
        c6.append(
            Contrast(
                f"(NPS+IQL+COMM - NPS+IQL) per agent: team {n1} ({large}) - team {n0} ({small})",
                large,
                *_interaction(
                    (*arm[0], large), (*arm[1], large), (*arm[0], small), (*arm[1], small)
                ),
                primary=False,
                per_agent=True,
            )
        )
    team_list = ", ".join(str(n) for n, _ in sizes)
    levels = penalty_levels()
    mildest = levels[-1][1] if levels else None
    c8 = [
        Contrast(
            f"{env} (penalty {p:g}) H{DEFAULT_HIDDEN}: NPS+IQL+COMM - NPS+IQL",
            env,
            *_diff(*arm),
            primary=env == mildest,
        )
        for p, env in levels
    ]
    listen8 = tuple(
        (env, m, DEFAULT_HIDDEN, env == mildest and m == "NPS+IQL+COMM")
        for _, env in levels
        for m in ("NPS+IQL+COMM", "PS+IQL+COMM")
    )
    penalty_list = ", ".join(f"{p:g}" for p, _ in levels)
    return [
        Claim(
            6,
            "Beyond the paper: NPS+COMM's gain over NPS holds as the team grows (PredatorPrey "
            "with more predators and prey on larger grids, every other rule as in the paper).",
            f"PredatorPrey, H {DEFAULT_HIDDEN}, at every team size ({team_list} predators): team "
            "return of NPS+IQL+COMM minus NPS+IQL > 0. Untested until every team size has runs. "
            f"Secondary: the gain per agent (returns divided by the team size) at the largest "
            "team minus at the smallest (negative: the gain shrinks as the team grows)."
            + _DECIDED_BY,
            c6,
        ),
        Claim(
            7,
            "Beyond the paper: an attention channel (TarMAC-style keys, values and an "
            "own-observation query, under the paper's independence rule) beats the paper's "
            "concatenation of messages, under NPS and under PS.",
            f"PredatorPrey, H {DEFAULT_HIDDEN}: team return of NPS+IQL+ATT minus NPS+IQL+COMM "
            "> 0 and of PS+IQL+ATT minus PS+IQL+COMM > 0. 3s_vs_5z is secondary." + _DECIDED_BY,
            [
                Contrast(
                    f"{env} H{DEFAULT_HIDDEN}: {share}+IQL+ATT - {share}+IQL+COMM",
                    env,
                    *_diff(
                        (f"{share}+IQL+ATT", DEFAULT_HIDDEN), (f"{share}+IQL+COMM", DEFAULT_HIDDEN)
                    ),
                    primary=env == "predator_prey",
                )
                for env in ("predator_prey", "3s_vs_5z")
                for share in ("NPS", "PS")
            ],
        ),
        Claim(
            8,
            "Beyond the paper: communication pays fully independent agents once prey no longer "
            "punish a lone predator: at penalty 0, NPS+IQL+COMM's agents act on their messages "
            "and it pays (at the paper's -0.75 nearly every NPS run settles into prey avoidance).",
            f"PredatorPrey 7x7, H {DEFAULT_HIDDEN}, lone-predator penalty {penalty_list} (one "
            "registry entry each): primary, the listening test of NPS+IQL+COMM at the mildest "
            "penalty; beside it, at every penalty, the listening test (PS+IQL+COMM as the "
            "positive control) and the team return of NPS+IQL+COMM minus NPS+IQL (its AUC "
            "measures how fast runs leave the penalised start). Untested until those runs exist.",
            c8,
            listening=listen8,
        ),
    ]


def run_statistics(grid: pd.DataFrame, last_k: int = DEFAULT_LAST_K) -> pd.DataFrame:
    """One row per (run, metric) for the env's primary metric and, where present, the return:
    the run's configuration, `final` (mean of its last `last_k` evaluations), `auc`
    (`stats.normalised_auc` over [0, budget]), `threshold_steps` and `reached`
    (`stats.steps_to_threshold` at the env's THRESHOLDS value, censored at budget + one
    evaluation interval; NaN where the metric has no threshold), `budget`, `eval_interval` and,
    for envs with basins, the PredatorPrey `basin` of the final team return.

    A run without a budget in its config (an old table) takes its (env, backend)'s largest
    env_steps as the horizon; one without an eval_interval, its median evaluation spacing.
    """
    if last_k < 1:
        raise AnalysisInputError(f"last_k: must be >= 1, got {last_k}")
    keys = ["env", "backend", "method", "hidden", "seed", "run_dir"]
    horizon = grid.groupby(["env", "backend"])["env_steps"].max().to_dict()
    rows = []
    for key, run in grid.groupby(keys, sort=False):
        env, backend = key[0], key[1]
        run = run.sort_values("eval_step")
        steps = run["env_steps"].to_numpy(dtype=float)
        budget = _first_number(run, "budget") or float(horizon[(env, backend)])
        interval = _first_number(run, "eval_interval") or (
            float(np.median(np.diff(steps))) if steps.size > 1 else budget
        )
        metrics = [primary_metric(env)[0]]
        metrics += ["eval_return_mean"] if "eval_return_mean" not in metrics else []
        for metric in metrics:
            if metric not in run or run[metric].isna().all():
                if metric == metrics[0]:
                    raise AnalysisInputError(
                        f"{key[-1]}: metric {metric!r} is empty for env {env!r}"
                    )
                continue
            values = run[metric].to_numpy(dtype=float)
            row = dict(zip(keys, key, strict=True))
            row.update(metric=metric, budget=budget, eval_interval=interval)
            row["final"] = float(run[metric].dropna().tail(last_k).mean())
            row["auc"] = stats.normalised_auc(steps, values, budget)
            threshold = threshold_for(env, metric)
            if threshold is None:
                row.update(threshold=math.nan, threshold_steps=math.nan, reached=None)
            else:
                at, reached = stats.steps_to_threshold(
                    steps, values, threshold[0], censor_at=budget + interval
                )
                row.update(threshold=threshold[0], threshold_steps=at, reached=reached)
            basins = metric == "eval_return_mean"
            row["basin"] = stats.classify_env_basin(env, row["final"]) if basins else None
            rows.append(row)
    columns = keys + ["metric", "budget", "eval_interval", "final", "auc", "threshold"]
    columns += ["threshold_steps", "reached", "basin"]
    return pd.DataFrame(rows, columns=columns)


def _first_number(run: pd.DataFrame, col: str) -> float | None:
    if col not in run:
        return None
    v = pd.to_numeric(run[col], errors="coerce").dropna()
    return float(v.iloc[0]) if len(v) and v.iloc[0] > 0 else None


def evaluate_contrast(
    c: Contrast,
    per_run: pd.DataFrame,
    backend: str,
    *,
    n_boot: int,
    seed: int,
    min_seeds: int,
) -> dict:
    """Every statistic's effect, CI, probability of improvement and verdict for one contrast
    in one (env, backend). The top-level effect, CI, verdict, seeds_to_decide, note and arms
    are those of the deciding statistic (the AUC); `statistics` holds all three."""
    envs = {c.env} | {c.arm_env(n) for n in c.arms}
    sel = per_run[per_run["env"].isin(envs) & (per_run["backend"] == backend)]
    metric = c.metric or primary_metric(c.env)[0]
    sel = sel[sel["metric"] == metric]
    margin = c.margin
    if c.kind == "equivalence" and margin is None:
        margin = 0.1 * (_max_return(c.env, backend) or math.nan)
    runs = {
        name: sel[
            (sel["env"] == c.arm_env(name)) & (sel["method"] == arm[0]) & (sel["hidden"] == arm[1])
        ]
        for name, arm in c.arms.items()
    }
    missing = [c.arm_label(n) for n, r in runs.items() if r.empty]
    budget = float(sel["budget"].max()) if len(sel) else math.nan
    statistics = {}
    for stat in STATISTICS:
        if missing:
            statistics[stat] = _untested("no runs for " + ", ".join(missing), min_seeds)
            continue
        m = margin if stat != "threshold_steps" else STEPS_MARGIN_FRACTION * budget
        statistics[stat] = _evaluate_statistic(
            c, stat, runs, m, n_boot=n_boot, seed=seed, min_seeds=min_seeds, backend=backend
        )
    threshold = threshold_for(c.env, metric)
    out = {
        "label": c.label,
        "env": c.env,
        "backend": backend,
        "metric": metric,
        "kind": c.kind,
        "margin": margin,
        "primary": c.primary,
        "threshold": threshold[0] if threshold else None,
        "deciding_statistic": DECIDING_STATISTIC,
        "statistics": statistics,
    }
    decided = statistics[DECIDING_STATISTIC]
    for k in ("arms", "effect", "ci_low", "ci_high", "ci_method", "mc_error_low"):
        out[k] = decided[k]
    for k in ("mc_error_high", "verdict", "seeds_to_decide", "decides_toward", "note"):
        out[k] = decided[k]
    for k in ("poi", "poi_ci_low", "poi_ci_high"):
        out[k] = decided[k]
    if "borderline_between" in decided:
        out["borderline_between"] = decided["borderline_between"]
    return out


def _untested(note: str, min_seeds: int) -> dict:
    return {
        "estimator": "iqm",
        "better": None,
        "margin": None,
        "arms": {},
        "effect": None,
        "ci_low": None,
        "ci_high": None,
        "ci_method": None,
        "resamples": None,
        "mc_error_low": None,
        "mc_error_high": None,
        "poi": None,
        "poi_ci_low": None,
        "poi_ci_high": None,
        "verdict": "untested",
        "seeds_to_decide": min_seeds,
        "decides_toward": None,
        "note": note,
    }


def _tolerance(stat: str) -> float:
    """How close to a boundary a CI bound counts as on it: env steps are whole numbers; returns
    and win rates resolve to stats.COMPARISON_TOL."""
    return 0.5 if stat == "threshold_steps" else stats.COMPARISON_TOL


def _all(xs: list[bool | None]) -> bool | None:
    return False if False in xs else None if None in xs else True


def _any(xs: list[bool | None]) -> bool | None:
    return True if True in xs else None if None in xs else False


def _evaluate_statistic(
    c: Contrast,
    stat: str,
    runs: dict[str, pd.DataFrame],
    margin: float | None,
    *,
    n_boot: int,
    seed: int,
    min_seeds: int,
    backend: str,
) -> dict:
    """Effect (IQM contrast), stratified-bootstrap CI, P(A better than B) and verdict of one
    statistic (a column of `run_statistics`) for one contrast."""
    lower = stat in LOWER_IS_BETTER
    out = _untested("", None)
    out.update(better="lower" if lower else "higher", margin=margin, seeds_to_decide=None)
    values = {n: r[stat].to_numpy(dtype=float) for n, r in runs.items()}
    if c.per_agent and stat in ("auc", "final"):
        values = {n: v / _team_size(c.arm_env(n)) for n, v in values.items()}
    if any(np.isnan(v).all() for v in values.values()):
        metric = next(iter(runs.values()))["metric"].iloc[0]
        out["note"] = f"no threshold defined for {metric} on {c.env}"
        return out
    equivalence = c.kind == "equivalence"
    boundaries = (-margin, margin) if equivalence and margin is not None else (0.0,)
    res = stats.bootstrap_contrast(
        values,
        c.weights,
        estimator="iqm",
        n_boot=n_boot,
        seed=seed,
        boundaries=[b for b in boundaries if math.isfinite(b)],
    )
    for name, a in res["arms"].items():
        a["config"] = c.arm_label(name)
        if stat == "threshold_steps":
            a["reached"] = int(runs[name]["reached"].astype(bool).sum())
            a["reached_fraction"] = a["reached"] / a["n"]
        if stat == "final" and runs[name]["basin"].notna().any():
            basins = runs[name]["basin"].tolist()
            a["basins"] = {b: basins.count(b) for b in stats.BASINS}
    lo, hi, d = res["ci_low"], res["ci_high"], res["effect"]
    out.update(arms=res["arms"], effect=d, ci_low=lo, ci_high=hi, ci_method=res["method"])
    out.update(
        resamples=res["resamples"],
        mc_error_low=res["mc_error_low"],
        mc_error_high=res["mc_error_high"],
    )
    if set(c.weights.values()) == {1.0, -1.0} and len(c.weights) == 2:
        (a_name, _), (b_name, _) = sorted(c.weights.items(), key=lambda kv: -kv[1])
        sign = -1.0 if lower else 1.0
        poi, plo, phi = stats.bootstrap_poi(
            sign * values[a_name],
            sign * values[b_name],
            n_boot=n_boot,
            seed=seed,
            tol=_tolerance(stat),
        )
        out.update(poi=poi, poi_ci_low=plo, poi_ci_high=phi)

    needs = max(min_seeds, stats.MIN_SEEDS)
    few = {a["config"]: a["n"] for a in res["arms"].values() if a["n"] < needs}
    if few:
        counts = ", ".join(f"{k} has {n}" for k, n in few.items())
        out.update(verdict="too few seeds", seeds_to_decide=needs)
        out["note"] = f"too few seeds: {counts} (a verdict needs {needs} per arm)"
        if min(few.values()) < stats.MIN_SEEDS:
            out.update(ci_low=None, ci_high=None, ci_method=None)
        return out

    tol = _tolerance(stat)
    err_lo, err_hi = res["mc_error_low"], res["mc_error_high"]
    if not equivalence:
        # In the claim's favour: the effect's sign, turned for statistics where lower is better.
        s = -1.0 if lower else 1.0
        good_bound, good_err = (-hi, err_hi) if lower else (lo, err_lo)
        bad_bound, bad_err = (-lo, err_lo) if lower else (hi, err_hi)
        supported = stats.above(good_bound, 0.0, good_err, tol)
        contradicted = stats.above(-bad_bound, 0.0, bad_err, tol)
        favour = s * d
        distance = abs(d)
    else:
        if margin is None or not math.isfinite(margin):
            out["note"] = f"no margin known for backend {backend!r}"
            out["verdict"] = "inconclusive"
            return out
        supported = _all(
            [stats.above(lo, -margin, err_lo, tol), stats.above(margin, hi, err_hi, tol)]
        )
        contradicted = _any(
            [stats.above(lo, margin, err_lo, tol), stats.above(-margin, hi, err_hi, tol)]
        )
        favour = margin - abs(d)
        distance = abs(favour)
        uninformative = None
        if stat == "threshold_steps":
            if not any(runs[n]["reached"].astype(bool).any() for n in runs):
                uninformative = "no run reached the threshold: equal censored times say nothing"
        elif c.floor is not None and max(a["iqm"] for a in res["arms"].values()) < c.floor:
            uninformative = (
                f"both arms below {c.floor:g}: no method wins, so equal win rates say nothing "
                "about communication"
            )
        if uninformative:
            out["verdict"] = "inconclusive"
            out["note"] = uninformative + "; more seeds would not decide it"
            return out
    if supported:
        out["verdict"] = "supported"
        return out
    if contradicted:
        out["verdict"] = "contradicted"
        return out
    out["verdict"] = "inconclusive"
    if supported is None or contradicted is None:
        side = "supported" if supported is None else "contradicted"
        out.update(verdict="borderline", borderline_between=side)
        out["note"] = (
            f"borderline: a CI bound lies within {stats.CLEAR_FACTOR:g} Monte-Carlo errors "
            f"(low +-{err_lo:.2g}, high +-{err_hi:.2g}; {res['resamples']:,} resamples) of "
            f"the decision boundary: {side} or inconclusive depending on the bootstrap's seed"
        )
    n_min = min(a["n"] for a in res["arms"].values())
    if abs(favour) <= tol:
        out["note"] = "the observed effect sits on the decision boundary; no seed count decides it"
        if stat == "threshold_steps" and not any(
            runs[n]["reached"].astype(bool).any() for n in runs
        ):
            out["note"] = "no run reached the threshold (all censored at budget + interval)"
        return out
    out["decides_toward"] = "supported" if favour > 0 else "contradicted"
    needed = stats.seeds_to_decide(res["arms"], distance)
    if needed is not None:
        out["seeds_to_decide"] = max(needed, n_min + 1, min_seeds)
    if favour < 0:
        what = "differs by more than the margin" if equivalence else "points against the claim"
        note = f"the observed effect {what}"
        out["note"] = f"{out['note']}; {note}" if out["note"] else note
    return out


def _toward(p: dict) -> str | None:
    return p.get("decides_toward")


def combine(primary: list[dict]) -> dict:
    """A claim's verdict from its primary contrasts (or their entries for one statistic), with
    the seeds per arm to decide it in the direction the data point and that direction
    (`decides_toward`: "supported" or "contradicted").

    untested if all are; contradicted if any is; supported if all are; borderline if a
    borderline contrast could contradict it, or could support it and all others are
    supported; too few seeds if some have too few and none is inconclusive or borderline; else
    inconclusive. The seeds to decide: where an undecided
    contrast points against the claim, the fewest that would contradict one of them (one
    contradicted contrast contradicts the claim); otherwise the most that every undecided
    contrast needs to be supported.
    """
    verdicts = [p["verdict"] for p in primary]
    out = {"verdict": "inconclusive", "seeds_to_decide": None, "decides_toward": None}
    if not verdicts or all(v == "untested" for v in verdicts):
        return {**out, "verdict": "untested"}
    if "contradicted" in verdicts:
        return {**out, "verdict": "contradicted"}
    if all(v == "supported" for v in verdicts):
        return {**out, "verdict": "supported"}
    borderline = [p.get("borderline_between") for p in primary if p["verdict"] == "borderline"]
    if "contradicted" in borderline or (
        borderline and set(verdicts) <= {"supported", "borderline"}
    ):
        out["verdict"] = "borderline"
    elif "too few seeds" in verdicts and "inconclusive" not in verdicts and not borderline:
        out["verdict"] = "too few seeds"
    against = [
        p["seeds_to_decide"]
        for p in primary
        if _toward(p) == "contradicted" and p["seeds_to_decide"] is not None
    ]
    if against:
        return {**out, "seeds_to_decide": min(against), "decides_toward": "contradicted"}
    needed = [p["seeds_to_decide"] for p in primary if p["verdict"] != "supported"]
    needed = [n for n in needed if n is not None]
    if needed:
        # Untested contrasts and those with too few seeds point nowhere yet.
        toward = "supported" if any(_toward(p) == "supported" for p in primary) else None
        out.update(seeds_to_decide=max(needed), decides_toward=toward)
    return out


def claim_outlook(primary: list[dict], verdict: str) -> tuple[list[str], bool, str]:
    """(the untested primary contrasts, whether more seeds of the runs there are could still
    make the claim supported, a sentence saying why)."""
    name = [
        p["label"] + ("" if p["backend"] == "(none)" else f" ({p['backend']})") for p in primary
    ]
    untested = [n for n, p in zip(name, primary, strict=True) if p["verdict"] == "untested"]
    if verdict == "supported":
        return untested, True, "Supported by every primary contrast."
    bad = [n for n, p in zip(name, primary, strict=True) if p["verdict"] == "contradicted"]
    against = [n for n, p in zip(name, primary, strict=True) if _toward(p) == "contradicted"]
    few = [n for n, p in zip(name, primary, strict=True) if p["verdict"] == "too few seeds"]
    parts = []
    if untested:
        parts.append(
            "It cannot become supported while "
            + "; ".join(untested)
            + (" is" if len(untested) == 1 else " are")
            + " untested (no runs)."
        )
    if bad:
        parts.append("It is contradicted by " + "; ".join(bad) + ".")
    if against:
        one = len(against) == 1
        parts.append(
            "; ".join(against)
            + (" points" if one else " point")
            + " against the claim: it becomes supported only if "
            + ("that effect reverses" if one else "those effects reverse")
        )
        seeds = [p["seeds_to_decide"] for p in primary if _toward(p) == "contradicted"]
        seeds = [n for n in seeds if n is not None]
        parts[-1] += (
            f"; as observed, about {min(seeds)} seeds per arm would contradict it."
            if seeds
            else "."
        )
    if few:
        parts.append("; ".join(few) + (" needs" if len(few) == 1 else " need"))
        parts[-1] += " more seeds before any verdict."
    can = not untested and not bad and not against
    if can and not parts:
        parts.append("More seeds could still make it supported: every effect points its way.")
    elif can:
        parts.append("With more seeds it could still become supported.")
    return untested, can, " ".join(parts)


def runs_left_out(df: pd.DataFrame) -> list[dict]:
    """ficomm's runs kept out of every verdict, by name, with the reason: a config that
    differs from the rest of its (env, backend) (an ablation variant, or a run whose budget or
    evaluation settings disagree with its configuration's), or a half-written run (aggregate's
    `incomplete_reason`: metrics.csv stops short of its budget / eval_interval, or
    run_info.json says finished: false)."""
    ours = df[df["source"] == "ficomm"].drop_duplicates("run_dir")
    out = []
    for _, r in ours.iterrows():
        reasons = []
        if r["variant"] != "":
            reasons.append(f"config differs from the rest of its env and backend: {r['variant']}")
        complete = (
            bool(r["run_complete"]) if "run_complete" in r and pd.notna(r["run_complete"]) else True
        )
        if not complete:
            why = r.get("incomplete_reason")
            reasons.append(
                f"half-written: {why}" if isinstance(why, str) and why else "half-written"
            )
        if reasons:
            out.append(
                {
                    "run_dir": str(r["run_dir"]),
                    "env": r["env"],
                    "backend": r["backend"],
                    "method": r["method"],
                    "hidden": int(r["hidden"]),
                    "seed": int(r["seed"]),
                    "reason": "; ".join(reasons),
                }
            )
    return out


def verdict_grid(df: pd.DataFrame) -> pd.DataFrame:
    """The runs the verdicts use: the main grid (`main_grid`) without half-written runs."""
    grid = main_grid(df)
    if "run_complete" in grid:
        complete = grid["run_complete"].map(lambda v: True if pd.isna(v) else bool(v))
        grid = grid[complete.astype(bool)]
    return grid


def configuration_summary(per_run: pd.DataFrame) -> list[dict]:
    """Per configuration (env, backend, method, hidden) on the env's primary metric: seeds, the
    IQM of each statistic, how many runs reached the threshold, and the basin counts."""
    out = []
    for (env, backend), part in per_run.groupby(["env", "backend"], sort=True):
        part = part[part["metric"] == primary_metric(env)[0]]
        for method, hidden in configuration_order(part):
            g = part[(part["method"] == method) & (part["hidden"] == hidden)]
            row = {
                "env": env,
                "backend": backend,
                "method": method,
                "hidden": int(hidden),
                "n_seeds": int(len(g)),
                "final_iqm": stats.iqm(g["final"]),
                "auc_iqm": stats.iqm(g["auc"]),
                "threshold": (threshold_for(env, primary_metric(env)[0]) or (None,))[0],
                "reached": None,
                "threshold_steps_iqm": None,
                "basins": None,
            }
            if g["reached"].notna().any():
                row["reached"] = int(g["reached"].astype(bool).sum())
                row["threshold_steps_iqm"] = stats.iqm(g["threshold_steps"])
            if g["basin"].notna().any():
                basins = g["basin"].tolist()
                row["basins"] = {b: basins.count(b) for b in stats.BASINS}
            out.append(row)
    return out


def replication_report(
    df: pd.DataFrame,
    reference: dict | None = None,
    *,
    last_k: int = DEFAULT_LAST_K,
    n_boot: int = stats.N_BOOT,
    seed: int = 0,
    min_seeds: int = DEFAULT_MIN_SEEDS,
) -> dict:
    """The report as a JSON-ready dict (see the module docstring for the rules)."""
    grid = verdict_grid(df)
    per_run = run_statistics(grid, last_k)
    backends = {e: sorted(set(grid.loc[grid["env"] == e, "backend"])) for e in set(grid["env"])}
    reference = reference or {}
    ref_claims = {int(k): v for k, v in (reference.get("claims") or {}).items()}

    heard = listening.listening_runs(grid)
    args = (per_run, heard, backends, ref_claims, n_boot, seed, min_seeds)
    claims = [_evaluate_claim(claim, *args) for claim in claims_for()]
    beyond = []
    for claim in beyond_paper_claims():
        c = _evaluate_claim(claim, *args)
        primary = [r for r in c["contrasts"] if r["primary"]]
        if any(r["verdict"] == "untested" for r in primary) and c["verdict"] != "untested":
            # A claim about team sizes says nothing until every team size has run.
            c.update(verdict="untested", seeds_to_decide=None, decides_toward=None)
            for v in c["verdicts_by_statistic"].values():
                v.update(verdict="untested", seeds_to_decide=None, decides_toward=None)
        beyond.append({**c, "beyond_paper": True})
    metrics = {env: primary_metric(env)[0] for env in sorted(backends)}
    return {
        "ficomm_version": ficomm.__version__,
        "reference_values": _compare_values(
            reference.get("final_performance") or [], per_run, n_boot, seed
        ),
        "definitions": {
            "final_performance": f"mean of each run's last {last_k} evaluations",
            "auc": (
                "area under the run's evaluation curve (metric vs env_steps, trapezoids; the "
                "first value held back to step 0, the last held up to the budget) over "
                "[0, budget], divided by the budget: the curve's average height, in the "
                "metric's units"
            ),
            "threshold_steps": (
                "env steps of the run's first evaluation whose metric is above the env's "
                "threshold; a run that never reaches it is kept and counted, censored at "
                "budget + one evaluation interval (the IQM does not depend on that value while "
                "at most a quarter of an arm is censored; P(A better than B) counts two "
                "censored runs as a tie)"
            ),
            "thresholds": [
                {"env": e, "metric": m, "value": v, "meaning": text}
                for (e, m), (v, text) in THRESHOLDS.items()
                if e in PAPER_ENVS or e in backends
            ],
            "basins": _basins_definition(sorted(backends)),
            "metrics": metrics,
            "estimator": (
                "IQM (interquartile mean, rliable): scipy.stats.trim_mean(x, 0.25) over the "
                "arm's seeds; with fewer than 4 seeds nothing is trimmed (the mean)"
            ),
            "probability_of_improvement": (
                "P(A better than B) = mean over all pairs (a, b) of runs of [a better than b] "
                "+ 0.5 [a = b] (Mann-Whitney U / (n_A n_B), rliable); two-arm contrasts only; "
                "reported, not deciding"
            ),
            "ci": (
                "95% CI from a stratified bootstrap (seeds resampled with replacement within "
                "each arm independently), exact where the resamples can be enumerated (every "
                f"multiset of an arm's seeds, at most {stats.EXACT_LIMIT:,} per arm and per half "
                "of a contrast's product distribution, weighted by its multinomial "
                "probability; the bounds are the distribution's 2.5% and 97.5% quantiles and "
                f"depend on no seed), else Monte-Carlo: {n_boot} resamples from seed {seed}, "
                f"doubled up to {stats.MAX_BOOT_FACTOR}x while a bound lies within "
                f"{stats.CLEAR_FACTOR:g} Monte-Carlo errors (95% binomial interval of the "
                "sample quantile) of a decision boundary; no CI below "
                f"{stats.MIN_SEEDS} seeds in an arm"
            ),
            "comparison_tolerance": (
                f"returns within {stats.COMPARISON_TOL:g} of a level are at it (1e-6 of the "
                f"reward unit {stats.REWARD_UNIT:g}; float sums of rewards are off by ~1e-15): "
                "thresholds, basins, ties in P(A better than B) and CI bounds against a "
                "boundary; env steps within 0.5"
            ),
            "deciding_statistic": DECIDING_STATISTIC,
            "min_seeds": max(min_seeds, stats.MIN_SEEDS),
            "verdict_rules": VERDICT_RULES.strip(),
        },
        "data": _data_summary(df, main_grid(df)),
        "configurations": configuration_summary(per_run),
        "runs_left_out": runs_left_out(df),
        "claims": claims,
        "beyond_paper": beyond,
    }


def _evaluate_claim(
    claim: Claim,
    per_run: pd.DataFrame,
    heard: pd.DataFrame,
    backends: dict[str, list[str]],
    ref_claims: dict,
    n_boot: int,
    seed: int,
    min_seeds: int,
) -> dict:
    """One claim's contrasts in every backend of their env, and its combined verdicts."""
    results = []
    for c in claim.contrasts:
        for backend in backends.get(c.env, []) or ["(none)"]:
            results.append(
                evaluate_contrast(
                    c, per_run, backend, n_boot=n_boot, seed=seed, min_seeds=min_seeds
                )
            )
    primary = [r for r in results if r["primary"]]
    by_stat = {stat: combine([r["statistics"][stat] for r in primary]) for stat in STATISTICS}
    decided = by_stat[DECIDING_STATISTIC]
    untested, can, outlook = claim_outlook(primary, decided["verdict"])
    ref = ref_claims.get(claim.id, {})
    out = {
        "id": claim.id,
        "text": claim.text,
        "operationalisation": claim.operationalisation,
        "verdict": decided["verdict"],
        "seeds_to_decide": decided["seeds_to_decide"],
        "decides_toward": decided["decides_toward"],
        "untested_contrasts": untested,
        "can_become_supported": can,
        "outlook": outlook,
        "deciding_statistic": DECIDING_STATISTIC,
        "verdicts_by_statistic": by_stat,
        "reference": ref,
        "reference_comparison": _compare_reference(ref, primary),
        "contrasts": results,
    }
    if claim.listening:
        arms = listening.evaluate_listening(
            heard, list(claim.listening), min_seeds=min_seeds, n_boot=n_boot, seed=seed
        )
        deciding = [a for a in arms if a["primary"]]
        verdicts = [a["verdict"] for a in deciding]
        verdict = "untested" if "untested" in verdicts else listening.combine(verdicts)
        summary = " ".join(a["sentence"] for a in deciding)
        out.update(
            listening=arms,
            verdict=verdict,
            deciding_statistic="listening",
            seeds_to_decide=None,
            decides_toward=None,
            can_become_supported=verdict != "contradicted",
            summary=summary,
            outlook={
                "untested": "Untested on the messages: no "
                + ", ".join(f"{a['method']} H{a['hidden']}" for a in deciding)
                + " run recorded interventions (runs from before them must be rerun).",
                "supported": f"Supported by the listening test. {summary}",
                "contradicted": f"Contradicted by the listening test. {summary}",
            }.get(
                verdict, f"Not decided by the listening test; more seeds may decide it. {summary}"
            ),
        )
    return out


def _basins_definition(envs: list[str]) -> str:
    """The paper's PredatorPrey basins, and those of the other team sizes in the data."""
    text = (
        "PredatorPrey, from the final team return: avoid within "
        f"{stats.BASIN_TOL:g} of {stats.PREDATOR_PREY_AVOID_RETURN:g} (no capture, no "
        "penalty), capture above, penalised below"
    )
    others = [(e, stats.basin_levels(e)) for e in envs if e != "predator_prey"]
    others = [f"{e}: within {lv[1]:g} of {lv[0]:g}" for e, lv in others if lv is not None]
    if others:
        text += " (0.25 per agent around the step costs of a whole episode; " + "; ".join(others)
        text += ")"
    return text


def write_report(report: dict, out_dir: str | Path) -> list[Path]:
    """replication.json and replication.md under `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "replication.json").write_text(json.dumps(_clean(report), indent=2) + "\n")
    (out_dir / "replication.md").write_text(render_markdown(report))
    return [out_dir / "replication.json", out_dir / "replication.md"]


def load_reference(path: str | Path | None) -> dict:
    """config/reference.yaml (the paper's reported directions and values)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise AnalysisInputError(f"{path}: reference file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise AnalysisInputError(f"{path}: corrupt YAML ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("claims", {}), dict):
        raise AnalysisInputError(f"{path}: expected a mapping with a 'claims' mapping")
    return data


def verdict_table(report: dict) -> list[str]:
    """The verdict of every claim as Markdown table lines (the report and the W&B Report)."""
    lines = [
        "| claim | verdict | decided by | AUC | final performance | steps to threshold | "
        "seeds per arm to decide (direction observed) | untested contrasts | "
        "can become supported |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["claims"]:
        by = c.get("verdicts_by_statistic") or {}
        other = [by.get(s, {}).get("verdict", "-") for s in STATISTICS]
        untested = c.get("untested_contrasts") or []
        decided = c.get("deciding_statistic", DECIDING_STATISTIC)
        lines.append(
            f"| {c['id']} | **{c['verdict']}** | {DECIDED_BY_TITLES.get(decided, decided)} | "
            f"{' | '.join(other)} | "
            f"{fmt_seeds_to_decide(c['seeds_to_decide'], c.get('decides_toward'))} | "
            f"{len(untested) or '-'} | {_can_become_supported(c)} |"
        )
    return lines


DECIDED_BY_TITLES = {"auc": "AUC", "listening": "listening test"}


def fmt_seeds_to_decide(n: int | None, toward: str | None) -> str:
    """Seeds per arm to decide, with the direction the observed effect points."""
    if n is None:
        return "-"
    return f"{n} {_DIRECTION.get(toward, '')}".strip()


_DIRECTION = {"supported": "for the claim", "contradicted": "against the claim"}


def _can_become_supported(c: dict) -> str:
    if c["verdict"] == "supported":
        return "(supported)"
    if "can_become_supported" not in c:
        return "-"
    return "yes" if c["can_become_supported"] else "no"


def configuration_table(report: dict) -> list[str]:
    """Per configuration: IQM statistics and basin counts, as Markdown table lines."""
    lines = [
        "| env | backend | method | H | seeds | final | AUC | reached threshold | "
        "steps to threshold | basins capture / avoid / penalised |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in report.get("configurations") or []:
        reached = "-" if g["reached"] is None else f"{g['reached']}/{g['n_seeds']}"
        basins = g["basins"]
        b = "-" if not basins else " / ".join(str(basins[k]) for k in stats.BASINS)
        lines.append(
            f"| {g['env']} | {g['backend']} | {g['method']} | {g['hidden']} | "
            f"{g['n_seeds']} | {_fmt(g['final_iqm'])} | {_fmt(g['auc_iqm'])} | {reached} | "
            f"{_fmt_steps(g['threshold_steps_iqm'])} | {b} |"
        )
    return lines


def render_markdown(report: dict) -> str:
    """The human-readable form of `replication_report`."""
    d = report["definitions"]
    lines = [
        "# Replication report: Pina et al. (2024), Fully Independent Communication in MARL",
        "",
        f"Generated by ficomm {report['ficomm_version']} from the aggregated results.",
        "",
        "## Data",
        "",
        "| env | backend | runs | configurations | seeds per configuration | incomplete runs |",
        "|---|---|---|---|---|---|",
    ]
    for e in report["data"]["groups"]:
        lines.append(
            f"| {e['env']} | {e['backend']} | {e['runs']} | {e['configurations']} | "
            f"{e['seeds_min']}-{e['seeds_max']} | {e['incomplete_runs']} |"
        )
    excluded = report["data"]["variant_runs_excluded"]
    lines += [
        "",
        f"Runs of ablation variants excluded from the claims: {excluded}. "
        f"Sources: {', '.join(report['data']['sources'])}.",
        "",
        "## Runs left out",
        "",
    ]
    left = report.get("runs_left_out") or []
    if not left:
        lines.append("None: every run of the main grid is complete and enters the verdicts.")
    else:
        lines += [
            f"{len(left)} run(s) enter no verdict:",
            "",
            "| run | env | backend | configuration | seed | reason |",
            "|---|---|---|---|---|---|",
        ]
        for r in left:
            lines.append(
                f"| `{r['run_dir']}` | {r['env']} | {r['backend']} | {r['method']} H{r['hidden']} "
                f"| {r['seed']} | {r['reason']} |"
            )
    thresholds = "; ".join(
        f"{t['env']} `{t['metric']}` > {t['value']:g} ({t['meaning']})" for t in d["thresholds"]
    )
    lines += [
        "",
        "## Method",
        "",
        f"- Final performance: {d['final_performance']}; metric per env: "
        + ", ".join(f"{k}: `{v}`" for k, v in d["metrics"].items()),
        f"- AUC: {d['auc']}.",
        f"- Steps to threshold: {d['threshold_steps']}. Thresholds: {thresholds}.",
        f"- Basins: {d['basins']}.",
        f"- Estimator: {d['estimator']}. Probability of improvement: "
        f"{d['probability_of_improvement']}.",
        f"- CI: {d['ci']}. Minimum seeds per arm for a verdict: {d['min_seeds']}.",
        f"- Comparisons: {d['comparison_tolerance']}.",
        f"- Deciding statistic: `{d['deciding_statistic']}` (every claim; the others are "
        "reported beside it).",
        "",
        d["verdict_rules"],
        "",
        "## Verdicts",
        "",
        *verdict_table(report),
    ]
    if report.get("configurations"):
        lines += ["", "## Configurations (IQM over seeds)", "", *configuration_table(report)]
    values = report.get("reference_values") or []
    lines += ["", "## Reference values (config/reference.yaml)", ""]
    if not values:
        lines.append("No per-configuration reference values are known; none are compared.")
    else:
        lines += [
            "| env | backend | method | H | metric | reference | source | ficomm mean (n) | "
            "95% CI | reference inside CI |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for v in values:
            lines.append(
                f"| {v['env']} | {v['backend']} | {v['method']} | {v['hidden']} | {v['metric']} | "
                f"{v['reference']} | {v.get('source', '')} | {_fmt(v['mean'])} ({v['n_seeds']}) | "
                f"[{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}] | {_fmt(v['reference_inside_ci'])} |"
            )
    for c in report["claims"]:
        lines += _claim_lines(c)
    beyond = report.get("beyond_paper") or []
    if beyond:
        lines += [
            "",
            "## Beyond the paper",
            "",
            "Questions the paper does not ask, tested with the same statistics; they do not "
            "enter the paper's verdicts above.",
            "",
            *verdict_table({"claims": beyond}),
        ]
        for c in beyond:
            lines += _claim_lines(c)
    return "\n".join(lines) + "\n"


def _claim_lines(c: dict) -> list[str]:
    """One claim's section of the report: its reference and every contrast."""
    ref = c["reference"]
    if c.get("beyond_paper"):
        heading = f"## Claim {c['id']} (beyond the paper): {c['verdict']}"
        paper = "Paper (reference): not a claim of the paper; nothing to compare with."
    else:
        heading = f"## Claim {c['id']}: {c['verdict']}"
        paper = (
            f"Paper (reference): direction `{ref.get('direction', 'unknown')}`, "
            f"value {ref.get('value', 'unknown')}"
            + (f" ({ref['source']})" if ref.get("source") else "")
            + f". {c['reference_comparison']}"
        )
    lines = [
        "",
        heading,
        "",
        f"Claim: {c['text']}",
        "",
        f"Tested as: {c['operationalisation']}",
        "",
        paper,
        "",
    ]
    if c.get("outlook"):
        lines += [f"Outlook: {c['outlook']}", ""]
    if c.get("listening"):
        lines += _listening_lines(c)
    lines += [
        "| contrast | backend | primary | statistic | arms (n seeds: IQM) | effect (IQM) | "
        "95% CI | P(A better) [95% CI] | verdict | seeds per arm to decide | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in c["contrasts"]:
        stat_rows = r.get("statistics") or {DECIDING_STATISTIC: r}
        if all(s["verdict"] == "untested" for s in stat_rows.values()) and r["note"]:
            stat_rows = {"all": r}  # arms without runs: one row says it for every statistic
        for stat, s in stat_rows.items():
            fmt = _fmt_steps if stat == "threshold_steps" else _fmt
            title = STATISTIC_TITLES.get(stat, stat)
            if stat == r.get("deciding_statistic"):
                title = f"**{title}** (decides)"
            ci = "" if s["ci_low"] is None else f"[{fmt(s['ci_low'])}, {fmt(s['ci_high'])}]"
            if s.get("ci_method") == "exact":
                ci += " exact"
            elif s.get("ci_method") == "monte-carlo":
                err = max(s["mc_error_low"], s["mc_error_high"])
                ci += f" Monte-Carlo +-{err:.2g} ({s['resamples']:,} resamples)"
            poi = (
                ""
                if s.get("poi") is None
                else (f"{s['poi']:.2f} [{_fmt(s['poi_ci_low'])}, {_fmt(s['poi_ci_high'])}]")
            )
            lines.append(
                f"| {r['label']} | {r['backend']} | {'yes' if r['primary'] else 'no'} | "
                f"{title} | {_fmt_arms(s['arms'], fmt)} | {fmt(s['effect'])} | {ci} | {poi} | "
                f"{s['verdict']} | "
                f"{fmt_seeds_to_decide(s['seeds_to_decide'], s.get('decides_toward'))} | "
                f"{s['note']} |"
            )
    return lines


def _listening_lines(c: dict) -> list[str]:
    """The listening test of a claim: one row per arm, then what the data show."""
    lines = [
        "Listening test (decides; `ficomm.analysis.listening`): at each run's final "
        "evaluation, every agent's incoming messages swapped for another episode's.",
        "",
        "| configuration | role | runs | action change (IQM) [95% CI] | verdict | return under "
        "swap - normal (IQM) [95% CI] | verdict | listening |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in c["listening"]:
        role = (
            "primary"
            if a["primary"]
            else ("positive control" if a["method"].startswith("PS+") else "secondary")
        )
        cells = ["-", "-", "-", "-"]
        for i, s in enumerate(a["statistics"]):
            f = (lambda v: f"{100 * v:.1f}%") if s["statistic"] == "swap_change" else _fmt
            ci = (
                ""
                if s["ci_low"] is None or math.isnan(s["ci_low"])
                else (f" [{f(s['ci_low'])}, {f(s['ci_high'])}]")
            )
            cells[2 * i : 2 * i + 2] = [f"{f(s['iqm'])}{ci}", s["verdict"]]
        lines.append(
            f"| {a['env']} {a['method']} H{a['hidden']} | {role} | {a['n']} | "
            f"{' | '.join(cells)} | **{a['verdict']}** |"
        )
    lines += ["", "In plain words: " + " ".join(a["sentence"] for a in c["listening"]), ""]
    lines += [
        "Contrasts of the team return, beside the listening test (the AUC measures how fast "
        "runs leave the penalised start, not whether anyone listens):",
        "",
    ]
    return lines


def _fmt_arms(arms: dict, fmt) -> str:
    parts = []
    for a in arms.values():
        extra = ""
        if "reached" in a:
            extra = f", reached {a['reached']}/{a['n']}"
        if a.get("basins"):
            extra = ", basins " + "/".join(str(a["basins"][b]) for b in stats.BASINS)
        parts.append(f"{a['config']} (n={a['n']}: {fmt(a['iqm'])}{extra})")
    return "; ".join(parts)


def _fmt_steps(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:,.0f}"


def _compare_reference(ref: dict, primary: list[dict]) -> str:
    """The paper's value (in the units of reference.yaml's `effect_of`: final performance
    unless the entry names another `statistic`) against our CI of that statistic."""
    value = ref.get("value", "unknown")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "The paper's value is unknown, so only the direction is compared (the verdict)."
    stat = ref.get("statistic", "final")
    entries = [(p["label"], (p.get("statistics") or {}).get(stat, p)) for p in primary]
    tested = [
        (lab, s) for lab, s in entries if s["ci_low"] is not None and math.isfinite(s["ci_low"])
    ]
    if not tested:
        return f"The paper reports {value:g}; no contrast here has a CI to compare it with."
    inside = [lab for lab, s in tested if s["ci_low"] <= value <= s["ci_high"]]
    return (
        f"The paper reports {value:g} ({STATISTIC_TITLES.get(stat, stat)}); inside our 95% CI "
        "for: " + (", ".join(inside) if inside else "none of the primary contrasts") + "."
    )


def _compare_values(entries: list, final: pd.DataFrame, n_boot: int, seed: int) -> list[dict]:
    """Each reference.yaml final_performance entry (env, method, hidden, metric, value) next to
    ficomm's mean and 95% CI for that configuration, per backend."""
    out = []
    for e in entries:
        metric = e.get("metric") or primary_metric(e["env"])[0]
        sel = final[
            (final["env"] == e["env"])
            & (final["method"] == e["method"])
            & (final["hidden"] == int(e["hidden"]))
            & (final["metric"] == metric)
        ]
        for backend, part in sel.groupby("backend") if len(sel) else [(None, sel)]:
            x = part["final"].to_numpy(dtype=float)
            lo, hi = stats.bootstrap_ci(x, n_boot=n_boot, seed=seed) if x.size else (None, None)
            value = e.get("value", "unknown")
            known = isinstance(value, int | float) and not isinstance(value, bool)
            tol = stats.COMPARISON_TOL  # a reference of -4 is at an interval ending at -4 - 2e-15
            inside = (
                bool(lo - tol <= value <= hi + tol) if known and x.size >= stats.MIN_SEEDS else None
            )
            out.append(
                {
                    **{k: e.get(k) for k in ("env", "method", "hidden")},
                    "metric": metric,
                    "backend": backend,
                    "reference": value,
                    "source": e.get("source", ""),
                    "n_seeds": int(x.size),
                    "mean": float(x.mean()) if x.size else None,
                    "ci_low": lo,
                    "ci_high": hi,
                    "reference_inside_ci": inside,
                }
            )
    return out


def _data_summary(df: pd.DataFrame, grid: pd.DataFrame) -> dict:
    per_run = grid.drop_duplicates("run_dir")
    groups = []
    for (env, backend), g in per_run.groupby(["env", "backend"]):
        seeds = g.groupby(["method", "hidden"])["seed"].nunique()
        complete = g["run_complete"].astype(bool) if "run_complete" in g else pd.Series(True)
        groups.append(
            {
                "env": env,
                "backend": backend,
                "title": env_title(env, backend),
                "runs": int(len(g)),
                "configurations": int(seeds.size),
                "seeds_min": int(seeds.min()),
                "seeds_max": int(seeds.max()),
                "incomplete_runs": int((~complete).sum()),
            }
        )
    return {
        "groups": groups,
        "sources": sorted(set(df["source"].astype(str))),
        "variant_runs_excluded": int(df.loc[df["variant"] != "", "run_dir"].nunique()),
        "runs_left_out": len(runs_left_out(df)),
    }


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _clean(obj):
    """NaN -> None so that the JSON is standard."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
