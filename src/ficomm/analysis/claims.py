"""The replication report: each claim of the paper tested on the aggregated
results, with its effect size, a seeded bootstrap CI and a verdict.

Every claim is operationalised as one or more contrasts between configurations' final
performance (`aggregate.final_performance`): an effect sum_a w_a * mean_a over arms a (a
configuration: method and hidden size in one env and backend), its 95% percentile-bootstrap CI
(seeds resampled independently within each arm) and a verdict:

superiority (the effect should be > 0):
    supported if CI low > 0; contradicted if CI high < 0; else inconclusive.
equivalence (|effect| should be below a stated margin):
    supported if the CI lies inside (-margin, margin); contradicted if it lies entirely
    outside; else inconclusive.
An arm with fewer than `min_seeds` seeds makes a contrast inconclusive whatever its CI (a
bootstrap over 2 seeds is far too narrow); an arm without runs makes it untested.
Inconclusive contrasts report `seeds_to_decide`: the seeds per arm at which the CI half-width,
extrapolated from the observed per-arm SDs, falls below the observed distance from the
decision boundary (`stats.seeds_to_decide`; at least one more than now and `min_seeds`).
A claim's verdict combines its primary contrasts: contradicted if any is, supported if all
are, untested if all are, else inconclusive (seeds to decide = the largest among them).
Secondary contrasts (other hidden sizes, the other env) are reported, not counted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

import ficomm
from ficomm.analysis import stats
from ficomm.analysis.aggregate import (
    DEFAULT_HIDDEN,
    DEFAULT_LAST_K,
    HIDDEN_SIZES,
    AnalysisInputError,
    env_title,
    final_performance,
    main_grid,
    primary_metric,
)
from ficomm.envs import ENV_NAMES, env_spec

DEFAULT_MIN_SEEDS = 3
# Claim 4's equivalence margin on the 3s_vs_5z test win rate: 10 percentage points. Below
# FLOOR both arms barely win, and "no difference" would say nothing about communication.
WIN_RATE_MARGIN = 0.10
WIN_RATE_FLOOR = 0.05


def _max_return(env: str, backend: str) -> float | None:
    """The backend's maximum team return (its registry entry); the secondary return-based
    check uses 10% of it."""
    b = env_spec(env).backends.get(backend) if env in ENV_NAMES else None
    return b.max_return if b else None


@dataclass(frozen=True)
class Contrast:
    """One comparison: arms name -> (method, hidden), weights name -> w."""

    label: str
    env: str
    arms: dict[str, tuple[str, int]]
    weights: dict[str, float]
    kind: str = "superiority"  # or "equivalence"
    margin: float | None = None
    metric: str | None = None  # None: the env's primary metric
    primary: bool = True
    floor: float | None = None  # equivalence only: uninformative when both arms are below


@dataclass(frozen=True)
class Claim:
    id: int
    text: str
    operationalisation: str
    contrasts: list[Contrast] = field(default_factory=list)


def _diff(a: tuple[str, int], b: tuple[str, int]) -> tuple[dict, dict]:
    return {"A": a, "B": b}, {"A": 1.0, "B": -1.0}


def _interaction(a1, a0, b1, b0) -> tuple[dict, dict]:
    """(a1 - a0) - (b1 - b0)."""
    arms = {"a1": a1, "a0": a0, "b1": b1, "b0": b0}
    return arms, {"a1": 1.0, "a0": -1.0, "b1": -1.0, "b0": 1.0}


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
            f"PredatorPrey, H {DEFAULT_HIDDEN}: final team return of NPS+IQL+COMM minus NPS+IQL > 0. "
            "Other hidden sizes are secondary.",
            c1,
        ),
        Claim(
            2,
            "Performance still lags behind parameter sharing (PS above NPS).",
            f"Both envs, H {DEFAULT_HIDDEN}, with and without COMM: final performance (PredatorPrey "
            "team return, 3s_vs_5z win rate) of PS minus NPS > 0 in all four contrasts. "
            "Other hidden sizes are secondary.",
            c2,
        ),
        Claim(
            3,
            "The effect of communication is more evident with parameter sharing.",
            f"PredatorPrey, H {DEFAULT_HIDDEN}: the COMM gain with PS minus the COMM gain with NPS "
            "(an interaction of 4 arms) > 0. 3s_vs_5z and other hidden sizes are secondary.",
            c3,
        ),
        Claim(
            4,
            "Communication is not always needed: in 3s_vs_5z it does not play an important "
            "role (the paper's Figure 5(a) PS+IQL vs 5(b) PS+IQL+COMM across hidden sizes).",
            f"3s_vs_5z, every H in {list(HIDDEN_SIZES)}: |final win rate of PS+IQL+COMM minus "
            f"PS+IQL| < {WIN_RATE_MARGIN:g} (equivalence: the CI must lie inside the margin); "
            f"if both arms win less than {WIN_RATE_FLOOR:g} the contrast is inconclusive. "
            "NPS and the return (margin 10% of the backend's max return) are secondary.",
            c4,
        ),
        Claim(
            5,
            "Network capacity must be considered together with communication: a larger "
            "hidden size can replace part of what communication gives.",
            "PredatorPrey, PS and NPS: the COMM gain (COMM minus no COMM, final team return) "
            "at H 32 minus the COMM gain at H 128 > 0 (the gain shrinks as H grows). "
            "3s_vs_5z is secondary.",
            c5,
        ),
    ]


def evaluate_contrast(
    c: Contrast,
    final: pd.DataFrame,
    backend: str,
    *,
    n_boot: int,
    seed: int,
    min_seeds: int,
) -> dict:
    """Effect, CI and verdict of one contrast in one (env, backend)."""
    sel = final[(final["env"] == c.env) & (final["backend"] == backend)]
    metric = c.metric or primary_metric(c.env)[0]
    margin = c.margin
    if c.kind == "equivalence" and margin is None:
        margin = 0.1 * (_max_return(c.env, backend) or math.nan)
    out = {
        "label": c.label,
        "env": c.env,
        "backend": backend,
        "metric": metric,
        "kind": c.kind,
        "margin": margin,
        "primary": c.primary,
        "arms": {},
        "effect": None,
        "ci_low": None,
        "ci_high": None,
        "verdict": "untested",
        "seeds_to_decide": None,
        "note": "",
    }
    values = {}
    for name, (method, hidden) in c.arms.items():
        runs = sel[
            (sel["method"] == method) & (sel["hidden"] == hidden) & (sel["metric"] == metric)
        ]
        values[name] = runs["final"].to_numpy(dtype=float)
    missing = [f"{c.arms[n][0]} H{c.arms[n][1]}" for n, v in values.items() if v.size == 0]
    if missing:
        out["note"] = "no runs for " + ", ".join(missing)
        out["seeds_to_decide"] = min_seeds
        return out
    res = stats.bootstrap_contrast(values, c.weights, n_boot=n_boot, seed=seed)
    for name, a in res["arms"].items():
        a["config"] = f"{c.arms[name][0]} H{c.arms[name][1]}"
    out.update(arms=res["arms"], effect=res["effect"], ci_low=res["ci_low"], ci_high=res["ci_high"])
    n_min = min(a["n"] for a in res["arms"].values())
    lo, hi, d = res["ci_low"], res["ci_high"], res["effect"]

    if c.kind == "superiority":
        decided = "supported" if lo > 0 else "contradicted" if hi < 0 else None
        distance = abs(d)
    else:
        if not math.isfinite(margin):
            out["note"] = f"no margin known for backend {backend!r}"
            out["verdict"] = "inconclusive"
            return out
        inside = -margin < lo and hi < margin
        outside = lo > margin or hi < -margin
        decided = "supported" if inside else "contradicted" if outside else None
        distance = abs(margin - abs(d))
        if c.floor is not None and max(a["mean"] for a in res["arms"].values()) < c.floor:
            out["verdict"] = "inconclusive"
            out["note"] = (
                f"both arms below {c.floor:g}: no method wins, so equal win rates say nothing "
                "about communication; more seeds would not decide it"
            )
            return out
    if n_min < min_seeds:
        out["verdict"] = "inconclusive"
        out["note"] = f"fewer than {min_seeds} seeds in an arm (min {n_min}); no verdict"
        needed = stats.seeds_to_decide(res["arms"], distance)
        out["seeds_to_decide"] = max(min_seeds, needed or 0)
        if needed is None:
            out["note"] += "; too few seeds to extrapolate, so this is a lower bound"
        return out
    if decided is not None:
        out["verdict"] = decided
        return out
    out["verdict"] = "inconclusive"
    needed = stats.seeds_to_decide(res["arms"], distance)
    if needed is None:
        out["note"] = "the observed effect sits on the decision boundary; no seed count decides it"
    else:
        out["seeds_to_decide"] = max(needed, n_min + 1, min_seeds)
    return out


def combine(primary: list[dict]) -> tuple[str, int | None]:
    """A claim's verdict and seeds-to-decide from its primary contrasts."""
    verdicts = [p["verdict"] for p in primary]
    if not verdicts or all(v == "untested" for v in verdicts):
        return "untested", None
    if "contradicted" in verdicts:
        return "contradicted", None
    if all(v == "supported" for v in verdicts):
        return "supported", None
    needed = [p["seeds_to_decide"] for p in primary if p["verdict"] != "supported"]
    needed = [n for n in needed if n is not None]
    return "inconclusive", max(needed) if needed else None


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
    grid = main_grid(df)
    finals = [final_performance(grid, last_k)]
    if "eval_return_mean" in grid:
        finals.append(final_performance(grid, last_k, metric="eval_return_mean"))
    final = pd.concat(finals, ignore_index=True).drop_duplicates(["run_dir", "metric"])
    backends = {e: sorted(set(grid.loc[grid["env"] == e, "backend"])) for e in set(grid["env"])}
    reference = reference or {}
    ref_claims = {int(k): v for k, v in (reference.get("claims") or {}).items()}

    claims = []
    for claim in claims_for():
        results = []
        for c in claim.contrasts:
            for backend in backends.get(c.env, []) or ["(none)"]:
                results.append(
                    evaluate_contrast(
                        c, final, backend, n_boot=n_boot, seed=seed, min_seeds=min_seeds
                    )
                )
        primary = [r for r in results if r["primary"]]
        verdict, needed = combine(primary)
        ref = ref_claims.get(claim.id, {})
        claims.append(
            {
                "id": claim.id,
                "text": claim.text,
                "operationalisation": claim.operationalisation,
                "verdict": verdict,
                "seeds_to_decide": needed,
                "reference": ref,
                "reference_comparison": _compare_reference(ref, primary),
                "contrasts": results,
            }
        )
    return {
        "ficomm_version": ficomm.__version__,
        "reference_values": _compare_values(
            reference.get("final_performance") or [], final, n_boot, seed
        ),
        "definitions": {
            "final_performance": f"mean of each run's last {last_k} evaluations",
            "metrics": {env: primary_metric(env)[0] for env in sorted(backends)},
            "ci": f"95% percentile bootstrap, seeds resampled within each arm, {n_boot} resamples, seed {seed}",
            "min_seeds": min_seeds,
            "verdict_rules": __doc__.split("\n\n", 1)[1].strip(),
        },
        "data": _data_summary(df, grid),
        "claims": claims,
    }


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
        "## Method",
        "",
        f"- Final performance: {d['final_performance']}; metric per env: "
        + ", ".join(f"{k}: `{v}`" for k, v in d["metrics"].items()),
        f"- CI: {d['ci']}. Minimum seeds per arm for a verdict: {d['min_seeds']}.",
        "",
        d["verdict_rules"],
        "",
        "## Verdicts",
        "",
        "| claim | verdict | seeds per arm to decide |",
        "|---|---|---|",
    ]
    for c in report["claims"]:
        lines.append(f"| {c['id']} | **{c['verdict']}** | {_fmt(c['seeds_to_decide'])} |")
    values = report.get("reference_values") or []
    lines += ["", "## Reference values (config/reference.yaml)", ""]
    if not values:
        lines.append("The paper's per-configuration values are unknown; none are compared.")
    else:
        lines += [
            "| env | backend | method | H | metric | paper | ficomm mean (n) | 95% CI | paper inside CI |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for v in values:
            lines.append(
                f"| {v['env']} | {v['backend']} | {v['method']} | {v['hidden']} | {v['metric']} | "
                f"{v['reference']} | {_fmt(v['mean'])} ({v['n_seeds']}) | "
                f"[{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}] | {_fmt(v['reference_inside_ci'])} |"
            )
    for c in report["claims"]:
        ref = c["reference"]
        lines += [
            "",
            f"## Claim {c['id']}: {c['verdict']}",
            "",
            f"Claim: {c['text']}",
            "",
            f"Tested as: {c['operationalisation']}",
            "",
            f"Paper (reference): direction `{ref.get('direction', 'unknown')}`, "
            f"value {ref.get('value', 'unknown')}"
            + (f" ({ref['source']})" if ref.get("source") else "")
            + f". {c['reference_comparison']}",
            "",
            "| contrast | backend | primary | arms (n seeds: mean) | effect | 95% CI | verdict | seeds to decide | note |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in c["contrasts"]:
            arms = "; ".join(
                f"{a['config']} (n={a['n']}: {a['mean']:.3f})" for a in r["arms"].values()
            )
            ci = "" if r["ci_low"] is None else f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
            lines.append(
                f"| {r['label']} | {r['backend']} | {'yes' if r['primary'] else 'no'} | {arms} | "
                f"{_fmt(r['effect'])} | {ci} | {r['verdict']} | {_fmt(r['seeds_to_decide'])} | {r['note']} |"
            )
    return "\n".join(lines) + "\n"


def _compare_reference(ref: dict, primary: list[dict]) -> str:
    value = ref.get("value", "unknown")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "The paper's value is unknown, so only the direction is compared (the verdict)."
    tested = [p for p in primary if p["ci_low"] is not None and math.isfinite(p["ci_low"])]
    if not tested:
        return f"The paper reports {value:g}; no contrast here has a CI to compare it with."
    inside = [p["label"] for p in tested if p["ci_low"] <= value <= p["ci_high"]]
    return (
        f"The paper reports {value:g}; inside our 95% CI for: "
        + (", ".join(inside) if inside else "none of the primary contrasts")
        + "."
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
            inside = bool(lo <= value <= hi) if known and x.size > 1 else None
            out.append(
                {
                    **{k: e.get(k) for k in ("env", "method", "hidden")},
                    "metric": metric,
                    "backend": backend,
                    "reference": value,
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
