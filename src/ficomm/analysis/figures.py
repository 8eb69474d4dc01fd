"""The paper's figures, regenerated from the aggregated table alone.

Per (env, backend) present in the data (backends are never mixed in one figure):
learning curves of the four methods at H 64, the hidden-size sweep of every method (on
3s_vs_5z, PS+IQL and PS+IQL+COMM are the paper's Figure 5(a)/(b)), and a per-seed strip plot
of final performance for every configuration. Curves are the mean over seeds with a 95%
bootstrap CI over seeds; x is the nominal environment step of each evaluation.

Each figure is written as PDF and PNG plus a CSV sidecar holding exactly the plotted data;
the `*_data` functions compute those tables and the `plot_*` functions draw them, so tests can
check both what is plotted and how.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from ficomm.analysis import stats  # noqa: E402
from ficomm.analysis.aggregate import (  # noqa: E402
    DEFAULT_HIDDEN,
    DEFAULT_LAST_K,
    HIDDEN_SIZES,
    METHODS,
    configuration_order,
    env_title,
    final_performance,
    main_grid,
    primary_metric,
)
from ficomm.analysis.figure_specs import figure_specs  # noqa: E402

METHOD_COLORS = dict(zip(METHODS, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=True))
HIDDEN_COLORS = {32: "#7fb3d5", 64: "#2e86c1", 128: "#1b2631"}
BASIN_COLORS = {"capture": "tab:green", "avoid": "tab:orange", "penalised": "tab:red"}


# ---------------------------------------------------------------- plotted data


def curve_data(
    df: pd.DataFrame,
    env: str,
    backend: str,
    configs: list[tuple[str, int]],
    *,
    n_boot: int = stats.N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean and 95% bootstrap CI over seeds of the primary metric at every evaluation step,
    for each (method, hidden) in `configs` that has runs. Columns: method, hidden, eval_step,
    mean, ci_low, ci_high, n_seeds."""
    col, _ = primary_metric(env)
    sel = df[(df["env"] == env) & (df["backend"] == backend)]
    parts = []
    for method, hidden in configs:
        runs = sel[(sel["method"] == method) & (sel["hidden"] == hidden)]
        if runs.empty:
            continue
        wide = runs.pivot_table(index="seed", columns="eval_step", values=col, aggfunc="mean")
        matrix = wide.to_numpy(dtype=float)
        lo, hi = stats.bootstrap_ci_columns(matrix, n_boot=n_boot, seed=seed)
        parts.append(
            pd.DataFrame(
                {
                    "method": method,
                    "hidden": hidden,
                    "eval_step": wide.columns.to_numpy(),
                    "mean": np.nanmean(matrix, axis=0),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_seeds": (~np.isnan(matrix)).sum(axis=0),
                }
            )
        )
    cols = ["method", "hidden", "eval_step", "mean", "ci_low", "ci_high", "n_seeds"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def seed_points_data(final: pd.DataFrame, env: str, backend: str) -> pd.DataFrame:
    """Per-seed final performance of every configuration of (env, backend), with its x slot
    and (PredatorPrey) basin. Columns: method, hidden, config, x, seed, final, basin."""
    sel = final[(final["env"] == env) & (final["backend"] == backend)]
    order = configuration_order(sel)
    rows = []
    for x, (method, hidden) in enumerate(order):
        runs = sel[(sel["method"] == method) & (sel["hidden"] == hidden)].sort_values("seed")
        for _, r in runs.iterrows():
            basin = stats.classify_basin(r["final"]) if env == "predator_prey" else ""
            rows.append(
                {
                    "method": method,
                    "hidden": hidden,
                    "config": f"{method} H{hidden}",
                    "x": x,
                    "seed": int(r["seed"]),
                    "final": float(r["final"]),
                    "basin": basin,
                }
            )
    return pd.DataFrame(rows, columns=["method", "hidden", "config", "x", "seed", "final", "basin"])


# ---------------------------------------------------------------- drawing


def plot_curves(
    data: pd.DataFrame, *, by: str, title: str, ylabel: str, legend_title: str
) -> Figure:
    """Lines (mean) with shaded 95% CI bands, one per value of `by` ('method' or 'hidden')."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    colors = METHOD_COLORS if by == "method" else HIDDEN_COLORS
    for key, part in data.groupby(by, sort=False):
        part = part.sort_values("eval_step")
        n = int(part["n_seeds"].max())
        label = f"{key} (n={n} seeds)" if by == "method" else f"H = {key} (n={n} seeds)"
        color = colors.get(key)
        ax.plot(part["eval_step"], part["mean"], label=label, color=color, linewidth=1.6)
        ax.fill_between(part["eval_step"], part["ci_low"], part["ci_high"], color=color, alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.xaxis.set_major_formatter(FuncFormatter(_steps_label))
    ax.grid(alpha=0.3)
    ax.legend(title=legend_title, fontsize=8, title_fontsize=9, loc="best")
    return fig


def plot_seed_points(data: pd.DataFrame, *, env: str, title: str, ylabel: str) -> Figure:
    """Strip plot: one point per seed per configuration, the mean as a black bar; on
    PredatorPrey points are coloured by basin and the avoidance level is drawn."""
    order = data.drop_duplicates("x").sort_values("x")
    fig, ax = plt.subplots(figsize=(max(6.4, 0.6 * len(order) + 2), 4.4), layout="constrained")
    jitter = _jitter(data)
    if env == "predator_prey":
        for basin, part in data.groupby("basin", sort=False):
            ax.scatter(
                part["x"] + jitter[part.index],
                part["final"],
                s=22,
                color=BASIN_COLORS.get(basin, "grey"),
                label=basin,
                zorder=3,
            )
        ax.axhline(
            stats.PREDATOR_PREY_AVOID_RETURN,
            color="tab:orange",
            linestyle="--",
            linewidth=1,
            label=f"avoidance level ({stats.PREDATOR_PREY_AVOID_RETURN:g})",
        )
        legend_title = "basin of each seed"
    else:
        for method, part in data.groupby("method", sort=False):
            ax.scatter(
                part["x"] + jitter[part.index],
                part["final"],
                s=22,
                color=METHOD_COLORS.get(method),
                label=method,
                zorder=3,
            )
        legend_title = "method"
    means = data.groupby("x")["final"].mean()
    ax.hlines(means.values, means.index - 0.3, means.index + 0.3, color="black", linewidth=1.5)
    ax.set_xticks(order["x"], order["config"], rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("configuration (method, hidden size H); black bar = mean over seeds")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(title=legend_title, fontsize=8, title_fontsize=9, loc="best")
    return fig


# ---------------------------------------------------------------- one call for all of them


def make_figure(
    spec: dict,
    df: pd.DataFrame,
    final: pd.DataFrame,
    *,
    n_boot: int = stats.N_BOOT,
    seed: int = 0,
    last_k: int = DEFAULT_LAST_K,
) -> tuple[Figure | None, pd.DataFrame]:
    """Draw one figure of `figure_specs`; returns it with its plotted data (no figure when
    there is nothing to plot)."""
    env, backend = spec["env"], spec["backend"]
    _, ylabel = primary_metric(env)
    where = env_title(env, backend)
    if spec["kind"] == "methods":
        data = curve_data(
            df, env, backend, [(m, DEFAULT_HIDDEN) for m in METHODS], n_boot=n_boot, seed=seed
        )
        title = f"{where}: four methods, H = {DEFAULT_HIDDEN}\nmean over seeds, 95% bootstrap CI"
        if data.empty:
            return None, data
        return plot_curves(
            data, by="method", title=title, ylabel=ylabel, legend_title="method"
        ), data
    if spec["kind"] == "hidden":
        method = spec["method"]
        data = curve_data(
            df, env, backend, [(method, h) for h in HIDDEN_SIZES], n_boot=n_boot, seed=seed
        )
        fig5 = {"fig5a": "Fig. 5(a) ", "fig5b": "Fig. 5(b) "}.get(spec["name"][:5], "")
        title = f"{fig5}{where}: {method}, hidden size\nmean over seeds, 95% bootstrap CI"
        legend = "GRU hidden size"
        if data.empty:
            return None, data
        return plot_curves(data, by="hidden", title=title, ylabel=ylabel, legend_title=legend), data
    data = seed_points_data(final, env, backend)
    title = f"{where}: final performance per seed\n(mean of each run's last {last_k} evaluations)"
    return plot_seed_points(data, env=env, title=title, ylabel=f"final {ylabel}"), data


def write_figures(
    df: pd.DataFrame,
    out_dir: str | Path,
    *,
    last_k: int = DEFAULT_LAST_K,
    n_boot: int = stats.N_BOOT,
    seed: int = 0,
) -> dict:
    """Write every figure (PDF, PNG, CSV sidecar) of the main grid and `figures.json`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = main_grid(df)
    final = final_performance(grid, last_k)
    manifest = {
        "final_performance": f"mean of each run's last {last_k} evaluations of the primary metric",
        "curves": "mean over seeds at each nominal evaluation step (env_steps floored to the "
        f"evaluation interval); band = 95% percentile bootstrap CI over seeds, {n_boot} resamples, seed {seed}",
        "excluded_variant_runs": int(df.loc[df["variant"] != "", "run_dir"].nunique()),
        "figures": [],
        "skipped": [],
    }
    for spec in figure_specs(grid):
        fig, data = make_figure(spec, grid, final, n_boot=n_boot, seed=seed, last_k=last_k)
        if fig is None:  # e.g. no H 64 runs for the method comparison
            manifest["skipped"].append({**spec, "reason": "no runs for this figure"})
            continue
        files = []
        for ext in ("pdf", "png"):
            path = out_dir / f"{spec['name']}.{ext}"
            fig.savefig(path, dpi=150 if ext == "png" else None)
            files.append(path.name)
        plt.close(fig)
        data.to_csv(out_dir / f"{spec['name']}.csv", index=False)
        files.append(f"{spec['name']}.csv")
        manifest["figures"].append(
            {**spec, "files": files, "metric": primary_metric(spec["env"])[0]}
        )
    (out_dir / "figures.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _jitter(data: pd.DataFrame) -> pd.Series:
    """Deterministic horizontal offsets so that seeds with equal values stay visible."""
    rank = data.groupby("x").cumcount()
    size = data.groupby("x")["x"].transform("size")
    return (rank - (size - 1) / 2) * (0.5 / np.maximum(size, 1))


def _steps_label(x: float, _pos: int) -> str:
    if abs(x) >= 1e6:
        return f"{x / 1e6:g}M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:g}k"
    return f"{x:g}"
