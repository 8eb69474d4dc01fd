"""The final-performance table (every configuration: mean, 95% bootstrap CI, IQM, seeds per
PredatorPrey basin) and the parameter-count table, each as CSV, Markdown and LaTeX."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ficomm.analysis import stats
from ficomm.analysis.aggregate import (
    ALL_METHODS,
    DEFAULT_LAST_K,
    AnalysisInputError,
    final_performance,
)

FINAL_COLUMNS = [
    "env",
    "backend",
    "variant",
    "method",
    "hidden",
    "metric",
    "n_seeds",
    "mean",
    "ci_low",
    "ci_high",
    "iqm",
    "sd",
    *[f"basin_{b}" for b in stats.BASINS],
    "n_incomplete",
]


def final_performance_table(
    final: pd.DataFrame, *, n_boot: int = stats.N_BOOT, seed: int = 0
) -> pd.DataFrame:
    """One row per configuration (env, backend, variant, method, hidden) of `final`
    (from `aggregate.final_performance`). Basin counts are filled for PredatorPrey only."""
    rows = []
    keys = ["env", "backend", "variant", "method", "hidden", "metric"]
    for key, group in final.groupby(keys, sort=False):
        x = group["final"].to_numpy(dtype=float)
        lo, hi = stats.bootstrap_ci(x, n_boot=n_boot, seed=seed)
        row = dict(zip(keys, key, strict=True))
        row.update(
            n_seeds=int(x.size),
            mean=float(x.mean()),
            ci_low=lo,
            ci_high=hi,
            iqm=stats.iqm(x),
            sd=float(x.std(ddof=1)) if x.size > 1 else math.nan,
        )
        levels = stats.basin_levels(key[0])  # the env's own avoid level (its team size)
        basins = [stats.classify_env_basin(key[0], v) for v in x] if levels else None
        for b in stats.BASINS:
            row[f"basin_{b}"] = basins.count(b) if basins is not None else pd.NA
        complete = group["run_complete"] if "run_complete" in group else pd.Series(True)
        row["n_incomplete"] = int((~complete.astype(bool)).sum())
        rows.append(row)
    table = pd.DataFrame(rows, columns=FINAL_COLUMNS)
    table["_m"] = table["method"].map(lambda m: ALL_METHODS.index(m) if m in ALL_METHODS else 99)
    table = table.sort_values(["env", "backend", "variant", "_m", "hidden"]).drop(columns="_m")
    return table.reset_index(drop=True)


def param_count_table(df: pd.DataFrame) -> pd.DataFrame:
    """n_params (per owner: per agent for NPS, the shared network for PS) as rows
    (env, backend, hidden) x one column per method."""
    if "n_params" not in df:
        raise AnalysisInputError("n_params: column missing from the aggregated table")
    per_run = df.drop_duplicates("run_dir")
    per_run = per_run[per_run["variant"] == ""]
    counts = per_run.groupby(["env", "backend", "hidden", "method"])["n_params"].agg(["min", "max"])
    bad = counts[counts["min"] != counts["max"]]
    if not bad.empty:
        env, backend, hidden, method = bad.index[0]
        raise AnalysisInputError(
            f"n_params: runs of {env}/{backend} {method} H{hidden} disagree "
            f"({bad.iloc[0]['min']} vs {bad.iloc[0]['max']}); check their run_info.json"
        )
    wide = counts["min"].unstack("method")
    wide = wide[[m for m in ALL_METHODS if m in wide.columns]]  # the attention ones last
    wide = wide.reset_index()
    wide.columns.name = None
    return wide


def write_tables(
    df: pd.DataFrame,
    out_dir: str | Path,
    *,
    last_k: int = DEFAULT_LAST_K,
    n_boot: int = stats.N_BOOT,
    seed: int = 0,
) -> list[Path]:
    """final_performance.{csv,md,tex} and param_counts.{csv,md,tex} under `out_dir`; every
    configuration of ficomm's runs, ablation variants as rows of their own."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = df[df["source"] == "ficomm"]  # pulled reference runs are compared in `publish` only
    final = final_performance(df, last_k)
    table = final_performance_table(final, n_boot=n_boot, seed=seed)
    params = param_count_table(df)
    avoid, tol = stats.PREDATOR_PREY_AVOID_RETURN, stats.BASIN_TOL
    note = (
        f"Final performance = mean of each run's last {last_k} evaluations of the environment's "
        "metric (PredatorPrey: team return; 3s_vs_5z: test win rate). CI: 95% percentile "
        f"bootstrap over seeds ({n_boot} resamples, seed {seed}). IQM: interquartile mean over "
        f"seeds. Basins (PredatorPrey): avoid = within {tol:g} of {avoid:g} (the step cost "
        f"alone: 4 agents x 100 steps x -0.01), capture = above, penalised = below. "
        "Backends are named per row and never pooled."
    )
    written = []
    for name, frame, caption, fmt in (
        ("final_performance", table, note, _fmt_final),
        (
            "param_counts",
            params,
            "Trainable parameters per owner (per agent for NPS, the shared network for PS).",
            _fmt_int,
        ),
    ):
        frame.to_csv(out_dir / f"{name}.csv", index=False)
        shown = frame.apply(fmt)
        (out_dir / f"{name}.md").write_text(to_markdown(shown, caption))
        (out_dir / f"{name}.tex").write_text(to_latex(shown, caption, label=f"tab:{name}"))
        written += [out_dir / f"{name}.{e}" for e in ("csv", "md", "tex")]
    return written


def to_markdown(frame: pd.DataFrame, caption: str = "") -> str:
    """A GitHub-flavoured Markdown table of already formatted cells."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return (f"{caption}\n\n" if caption else "") + "\n".join(lines) + "\n"


def to_latex(frame: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs LaTeX table of already formatted cells."""
    esc = str.maketrans({"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "+": "+"})
    cols = [str(c).translate(esc) for c in frame.columns]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{" + "l" * len(cols) + "}",
        r"\toprule",
        " & ".join(cols) + r" \\",
        r"\midrule",
    ]
    for row in frame.itertuples(index=False):
        lines.append(" & ".join(str(v).translate(esc) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(r"\caption{" + caption.translate(esc) + "}")
    if label:
        lines.append(r"\label{" + label + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _fmt_final(col: pd.Series) -> pd.Series:
    if col.name in ("mean", "ci_low", "ci_high", "iqm", "sd"):
        return col.map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    return col.map(lambda v: "" if v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v)


def _fmt_int(col: pd.Series) -> pd.Series:
    if col.name in ALL_METHODS:
        return col.map(lambda v: "" if pd.isna(v) else f"{int(v):,}")
    return col
