"""The paper's figures, regenerated from the aggregated table alone.

Per (env, backend) present in the data (backends are never mixed in one figure):
learning curves of the four methods at H 64, the hidden-size sweep of every method (on
3s_vs_5z, PS+IQL and PS+IQL+COMM are the paper's Figure 5(a)/(b)), and a per-seed strip plot
of final performance for every configuration. Curves are the mean over seeds with a 95%
bootstrap CI over seeds; x is the nominal environment step of each evaluation.

Beyond the paper, where a grid holds H 64 runs of one env family at several team sizes
(PredatorPrey with 4, 8, 16 predators): final performance, normalised AUC and training cost
against team size, one line per method, the IQM over seeds with its stratified-bootstrap 95% CI.

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
    ALL_METHODS,
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
from ficomm.analysis.claims import run_statistics  # noqa: E402
from ficomm.analysis.figure_specs import figure_specs  # noqa: E402
from ficomm.envs import env_spec  # noqa: E402

METHOD_COLORS = dict(
    zip(
        ALL_METHODS,
        ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"),
        strict=True,
    )
)
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
            basin = stats.classify_env_basin(env, r["final"]) or ""
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


SCALE_COLUMNS = ["statistic", "method", "team_size", "env", "iqm", "ci_low", "ci_high", "n_seeds"]
SCALE_LABELS = {
    "final": "final return per agent\n(team return / team size, mean of the last {k} evaluations)",
    "auc": "normalised AUC per agent\n(area under the return curve / budget / team size)",
    "cost": "training cost: seconds per 1k env steps\n(wall_time / env_steps, whole run)",
}


def run_cost(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: seconds of training per 1k env steps, from its last metrics.csv row (wall_time
    / env_steps: the whole run, evaluations included). Columns: env, backend, method, hidden,
    seed, run_dir, cost."""
    keys = ["env", "backend", "method", "hidden", "seed", "run_dir"]
    if "wall_time" not in df:
        return pd.DataFrame(columns=[*keys, "cost"])
    last = df.sort_values("env_steps").groupby("run_dir", sort=False).tail(1)
    last = last[last["env_steps"] > 0]
    return last[keys].assign(cost=1e3 * last["wall_time"].to_numpy() / last["env_steps"])


def scale_data(
    df: pd.DataFrame,
    envs: list[str],
    backend: str,
    statistic: str,
    *,
    last_k: int = DEFAULT_LAST_K,
    n_boot: int = stats.N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """Per (method, team size) at H 64: IQM over seeds and its 95% stratified-bootstrap CI of
    `statistic`: 'final' or 'auc' (the env's return statistics of the replication report,
    divided by the team size: per agent, so that team sizes compare) or 'cost' (seconds per
    1k env steps, `run_cost`). Columns: SCALE_COLUMNS."""
    sel = df[df["env"].isin(envs) & (df["backend"] == backend) & (df["hidden"] == DEFAULT_HIDDEN)]
    if sel.empty:
        return pd.DataFrame(columns=SCALE_COLUMNS)
    if statistic == "cost":
        per_run = run_cost(sel).rename(columns={"cost": "value"})
    else:
        per_run = run_statistics(sel, last_k)
        per_run = per_run[per_run["metric"] == per_run["env"].map(lambda e: primary_metric(e)[0])]
        size = per_run["env"].map(lambda e: env_spec(e).team_size)
        per_run = per_run.assign(value=per_run[statistic] / size)
    rows = []
    for (method, env), runs in per_run.groupby(["method", "env"], sort=False):
        point, lo, hi = stats.stratified_bootstrap_iqm(
            runs["value"].to_numpy(dtype=float), n_boot=n_boot, seed=seed
        )
        rows.append([statistic, method, env_spec(env).team_size, env, point, lo, hi, len(runs)])
    out = pd.DataFrame(rows, columns=SCALE_COLUMNS)
    rank = {m: i for i, m in enumerate(METHODS)}
    return out.sort_values(
        ["method", "team_size"], key=lambda c: c.map(rank).fillna(c)
    ).reset_index(drop=True)


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
    levels = stats.basin_levels(env)
    if levels is not None:
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
            levels[0],
            color="tab:orange",
            linestyle="--",
            linewidth=1,
            label=f"avoidance level ({levels[0]:g})",
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


def plot_scale(data: pd.DataFrame, *, title: str, ylabel: str, level: float | None) -> Figure:
    """One line per method against team size (log2 axis): IQM markers, 95% CI error bars; an
    optional horizontal level (the avoidance return per agent)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    sizes = sorted(set(data["team_size"]))
    for i, (method, part) in enumerate(data.groupby("method", sort=False)):
        part = part.sort_values("team_size")
        x = part["team_size"].to_numpy(dtype=float) * 2 ** ((i - 1.5) * 0.02)  # dodge the bars
        y = part["iqm"].to_numpy(dtype=float)
        err = np.vstack([y - part["ci_low"], part["ci_high"] - y])
        n = int(part["n_seeds"].min())
        ax.errorbar(
            x,
            y,
            yerr=np.where(np.isnan(err), 0.0, err),
            marker="o",
            capsize=3,
            linewidth=1.6,
            color=METHOD_COLORS.get(method),
            label=f"{method} (n>={n} seeds)",
        )
    if level is not None:
        ax.axhline(
            level, color="tab:orange", linestyle="--", linewidth=1, label=f"avoidance ({level:g})"
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(int(n)) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("team size (predators)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(title="method (IQM, 95% CI)", fontsize=8, title_fontsize=9, loc="best")
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
    if spec["kind"] == "scale":
        return _scale_figure(spec, df, n_boot=n_boot, seed=seed, last_k=last_k)
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
    if spec["kind"] == "channels":
        data = curve_data(
            df, env, backend, [(m, DEFAULT_HIDDEN) for m in ALL_METHODS], n_boot=n_boot, seed=seed
        )
        title = (
            f"{where}: message channels (none, concatenation, attention), H = {DEFAULT_HIDDEN}"
            "\nmean over seeds, 95% bootstrap CI"
        )
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


def _scale_figure(spec: dict, df: pd.DataFrame, *, n_boot: int, seed: int, last_k: int):
    stat, envs = spec["statistic"], spec["envs"]
    data = scale_data(df, envs, spec["backend"], stat, last_k=last_k, n_boot=n_boot, seed=seed)
    if data.empty:
        return None, data
    family = env_spec(envs[0]).title.split(" ")[0]
    backend_title = env_spec(envs[0]).backends[spec["backend"]].title
    what = {"final": "final performance", "auc": "sample efficiency", "cost": "training cost"}
    title = (
        f"{family} ({backend_title} backend), H = {DEFAULT_HIDDEN}: {what[stat]} vs team size"
        "\nIQM over seeds, 95% stratified-bootstrap CI"
    )
    level = None
    if stat != "cost":
        per_agent = {
            round(lv[0] / env_spec(e).team_size, 9)
            for e in envs
            if (lv := stats.basin_levels(e)) is not None
        }
        level = per_agent.pop() if len(per_agent) == 1 else None
    ylabel = SCALE_LABELS[stat].format(k=last_k)
    return plot_scale(data, title=title, ylabel=ylabel, level=level), data


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
        metric = "wall_time" if spec.get("statistic") == "cost" else primary_metric(spec["env"])[0]
        manifest["figures"].append({**spec, "files": files, "metric": metric})
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
