"""The paper's figures, regenerated from the aggregated table alone.

Per (env, backend) present in the data (backends are never mixed in one figure):
learning curves of the four methods at H 64, the hidden-size sweep of every method with two or
more hidden sizes (on 3s_vs_5z, PS+IQL and PS+IQL+COMM are the paper's Figure 5(a)/(b)),
claim 5's figure (COMM's gain against H, for PS and NPS), and a per-seed strip plot of final
performance for every configuration.

Curves show what the replication report tests: the IQM over seeds (thick) with its 95%
stratified-bootstrap CI as the band (`stats.stratified_bootstrap_iqm`, as the report's IQMs),
every seed's own curve thin beside it, and no band below MIN_BAND_SEEDS seeds (a CI from two
seeds is their range). x is the nominal environment step of each evaluation. Curves of one
(env, backend) share their y-limits (a sweep compares across figures), and where a run is
long enough a second panel zooms on the first ZOOM_STEPS env steps, where the methods differ
before most settle. Reference lines mark the env's avoid level and the report's threshold.
Colours: Okabe-Ito (colour-blind safe), one fixed colour per method in every figure.

Beyond the paper, where a grid holds H 64 runs of one env family at several team sizes
(PredatorPrey with 4, 8, 16 predators): final performance, normalised AUC and training cost
against team size, one line per method, the IQM over seeds with its stratified-bootstrap 95% CI.

Each figure is written as PDF and PNG plus a CSV sidecar holding exactly the plotted data and
an .rst caption (the Snakemake report's); the `*_data` functions compute those tables and the
`plot_*` functions draw them, so tests can check both what is plotted and how.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from ficomm.analysis import listening, stats  # noqa: E402
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
from ficomm.analysis.claims import run_statistics, threshold_for  # noqa: E402
from ficomm.analysis.figure_specs import (  # noqa: E402
    COMM_PAIRS,
    LISTENING_METHODS,
    figure_specs,
)
from ficomm.envs import env_spec  # noqa: E402

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
# deficiency. The headline pair (NPS+IQL vs NPS+IQL+COMM) gets the two most distinct hues.
OKABE_ITO = dict(
    orange="#E69F00",
    sky_blue="#56B4E9",
    bluish_green="#009E73",
    yellow="#F0E442",
    blue="#0072B2",
    vermillion="#D55E00",
    reddish_purple="#CC79A7",
    black="#000000",
)
METHOD_COLORS = {
    "PS+IQL": OKABE_ITO["bluish_green"],
    "PS+IQL+COMM": OKABE_ITO["reddish_purple"],
    "NPS+IQL": OKABE_ITO["orange"],
    "NPS+IQL+COMM": OKABE_ITO["blue"],
    "PS+IQL+ATT": OKABE_ITO["vermillion"],
    "NPS+IQL+ATT": OKABE_ITO["black"],
}
# Hidden-size sweeps draw one method: H gets the palette's three remaining strong colours.
HIDDEN_COLORS = {32: OKABE_ITO["sky_blue"], 64: OKABE_ITO["black"], 128: OKABE_ITO["vermillion"]}
BASIN_COLORS = {
    "capture": OKABE_ITO["bluish_green"],
    "avoid": "#8c8c8c",  # neutral grey: the basin a method settles in when it learns nothing
    "penalised": OKABE_ITO["vermillion"],
}
BASIN_MARKERS = {"capture": "^", "avoid": "o", "penalised": "v"}
REFERENCE_COLOR = "#555555"

# Below this many seeds a configuration's curve has no band (the report's own minimum for a
# verdict: a bootstrap over 2 seeds is their range, not a CI); its seeds' curves stand instead.
MIN_BAND_SEEDS = stats.MIN_SEEDS
# The zoom panel: the first 200k env steps, where the NPS methods differ on PredatorPrey. Drawn
# where the last evaluation lies beyond 1.5 x this (else the whole run fits the first panel).
ZOOM_STEPS = 200_000


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
    """IQM over seeds of the primary metric at every evaluation step with its 95%
    stratified-bootstrap CI (NaN below MIN_BAND_SEEDS seeds), and every seed's own value, for
    each (method, hidden) in `configs` that has runs. Columns: method, hidden, eval_step, iqm,
    ci_low, ci_high, n_seeds, then seed<k> for every seed present (NaN where a configuration
    has no such seed)."""
    col, _ = primary_metric(env)
    sel = df[(df["env"] == env) & (df["backend"] == backend)]
    parts = []
    for method, hidden in configs:
        runs = sel[(sel["method"] == method) & (sel["hidden"] == hidden)]
        if runs.empty:
            continue
        wide = runs.pivot_table(index="seed", columns="eval_step", values=col, aggfunc="mean")
        matrix = wide.to_numpy(dtype=float)
        # The report's CI of the IQM (exact where the resamples can be enumerated); NaN bounds
        # below MIN_BAND_SEEDS seeds.
        lo, hi = stats.bootstrap_ci_columns(matrix, n_boot=n_boot, seed=seed, estimator="iqm")
        rows = [
            (stats.iqm(matrix[:, j]), lo[j], hi[j], int((~np.isnan(matrix[:, j])).sum()))
            for j in range(matrix.shape[1])
        ]
        part = pd.DataFrame(rows, columns=["iqm", "ci_low", "ci_high", "n_seeds"])
        part.insert(0, "eval_step", wide.columns.to_numpy())
        part.insert(0, "hidden", hidden)
        part.insert(0, "method", method)
        for k, run_seed in enumerate(wide.index):
            part[f"seed{int(run_seed)}"] = matrix[k]
        parts.append(part)
    cols = ["method", "hidden", "eval_step", "iqm", "ci_low", "ci_high", "n_seeds"]
    if not parts:
        return pd.DataFrame(columns=cols)
    data = pd.concat(parts, ignore_index=True)
    seeds = sorted((c for c in data.columns if c.startswith("seed")), key=lambda c: int(c[4:]))
    return data[cols + seeds]


def seed_columns(data: pd.DataFrame) -> list[str]:
    """The per-seed columns of a `curve_data` table."""
    return [c for c in data.columns if c.startswith("seed") and c[4:].isdigit()]


def reference_levels(env: str) -> list[tuple[float, str, str]]:
    """(value, label, line style) of the env's reference lines: the avoid level (its registry's
    avoid_return) and the replication report's threshold (`claims.threshold_for`)."""
    col, _ = primary_metric(env)
    levels = []
    basins = stats.basin_levels(env)
    if basins is not None:
        levels.append((basins[0], f"avoid level ({basins[0]:g}: no capture, no penalty)", "--"))
    threshold = threshold_for(env, col)
    if threshold is not None:
        levels.append((threshold[0], f"threshold (> {threshold[0]:g})", ":"))
    return levels


def curve_limits(df: pd.DataFrame, env: str, backend: str, *, max_step: float | None = None):
    """(low, high) y-limits shared by every curve figure of (env, backend): the range of every
    run's evaluations (up to `max_step`) and the reference lines, padded by 5%."""
    col, _ = primary_metric(env)
    sel = df[(df["env"] == env) & (df["backend"] == backend)]
    if max_step is not None:
        sel = sel[sel["eval_step"] <= max_step]
    values = [*sel[col].dropna().to_numpy(dtype=float), *(v for v, _, _ in reference_levels(env))]
    if not values:
        return None
    low, high = min(values), max(values)
    pad = 0.05 * (high - low) if high > low else 1.0
    return low - pad, high + pad


COMM_GAIN_COLUMNS = [
    "share",
    "statistic",
    "hidden",
    "gain",
    "ci_low",
    "ci_high",
    "comm_method",
    "comm_iqm",
    "n_comm",
    "plain_method",
    "plain_iqm",
    "n_plain",
]
COMM_GAIN_STATISTICS = ("auc", "final")


def comm_gain_data(
    df: pd.DataFrame,
    env: str,
    backend: str,
    shares: list[str],
    *,
    last_k: int = DEFAULT_LAST_K,
    n_boot: int = stats.N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """Claim 5's quantity: per sharing, statistic (normalised AUC, final) and hidden size,
    COMM's gain = IQM(COMM) - IQM(no COMM) of the env's primary metric over seeds, with the
    report's 95% stratified-bootstrap CI of that contrast (`stats.bootstrap_contrast`; NaN where
    an arm has fewer than MIN_BAND_SEEDS seeds). Columns: COMM_GAIN_COLUMNS."""
    col, _ = primary_metric(env)
    sel = df[(df["env"] == env) & (df["backend"] == backend)]
    per_run = run_statistics(sel, last_k)
    per_run = per_run[per_run["metric"] == col]
    rows = []
    for share in shares:
        comm, plain = COMM_PAIRS[share]
        hiddens = sorted(
            set(per_run.loc[per_run["method"] == comm, "hidden"])
            & set(per_run.loc[per_run["method"] == plain, "hidden"])
        )
        for statistic in COMM_GAIN_STATISTICS:
            for hidden in hiddens:
                at = per_run[per_run["hidden"] == hidden]
                arms = {
                    m: at.loc[at["method"] == m, statistic].to_numpy(dtype=float)
                    for m in (comm, plain)
                }
                res = stats.bootstrap_contrast(
                    arms, {comm: 1.0, plain: -1.0}, estimator="iqm", n_boot=n_boot, seed=seed
                )
                few = min(len(v) for v in arms.values()) < MIN_BAND_SEEDS
                rows.append(
                    [
                        share,
                        statistic,
                        int(hidden),
                        res["effect"],
                        math.nan if few else res["ci_low"],
                        math.nan if few else res["ci_high"],
                        comm,
                        res["arms"][comm]["iqm"],
                        res["arms"][comm]["n"],
                        plain,
                        res["arms"][plain]["iqm"],
                        res["arms"][plain]["n"],
                    ]
                )
    return pd.DataFrame(rows, columns=COMM_GAIN_COLUMNS)


PENALTY_COLUMNS = ["penalty", "env", "panel", "series", "iqm", "ci_low", "ci_high", "n_seeds"]


def penalty_data(
    df: pd.DataFrame,
    envs: list[str],
    backend: str,
    *,
    last_k: int = DEFAULT_LAST_K,
    n_boot: int = stats.N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """The penalty study at H 64, per penalty (env): COMM's gain on the normalised AUC per
    sharing (`comm_gain_data`'s contrast) and, per comm method, the fraction of actions the
    swap intervention changes at the final evaluation (IQM over seeds, bootstrap CI; NaN
    below MIN_BAND_SEEDS seeds). Columns: PENALTY_COLUMNS."""
    rows = []
    for env in envs:
        at = df[(df["env"] == env) & (df["hidden"] == DEFAULT_HIDDEN)]
        p = env_spec(env).penalty
        shares = [s for s, pair in COMM_PAIRS.items() if set(pair) <= set(at["method"])]
        gain = comm_gain_data(at, env, backend, shares, last_k=last_k, n_boot=n_boot, seed=seed)
        for r in gain[gain["statistic"] == "auc"].itertuples():
            n = min(r.n_comm, r.n_plain)
            rows.append([p, env, "gain", r.share, r.gain, r.ci_low, r.ci_high, n])
        heard = listening.listening_runs(at[at["backend"] == backend])
        for method, runs in heard.groupby("method", sort=False):
            x = runs["swap_change"].to_numpy(float)
            res = stats.bootstrap_contrast({"x": x}, {"x": 1.0}, estimator="iqm", seed=seed)
            few = x.size < MIN_BAND_SEEDS
            lo, hi = (math.nan, math.nan) if few else (res["ci_low"], res["ci_high"])
            rows.append([p, env, "listening", method, res["effect"], lo, hi, x.size])
    return pd.DataFrame(rows, columns=PENALTY_COLUMNS)


def plot_penalty(data: pd.DataFrame, *, title: str, ylabel: str) -> Figure:
    """Two panels against the lone-predator penalty: COMM's gain on the AUC (PS and NPS) and
    the fraction of actions the swap changes (PS+IQL+COMM and NPS+IQL+COMM), IQM over seeds
    with 95% CI error bars (hollow points: too few seeds for a CI)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    colors = {**{s: METHOD_COLORS[c] for s, (c, _) in COMM_PAIRS.items()}, **METHOD_COLORS}
    for ax, panel in zip(axes, ("gain", "listening"), strict=True):
        for series, rows in data[data["panel"] == panel].groupby("series", sort=False):
            rows = rows.sort_values("penalty")
            x, y = rows["penalty"].to_numpy(float), rows["iqm"].to_numpy(float)
            label = f"{series}: {' - '.join(COMM_PAIRS[series])}" if panel == "gain" else series
            c = colors.get(series, "grey")
            _ci_line(ax, x, y, rows["ci_low"], rows["ci_high"], c, label=label)
        ax.set_xticks(sorted(set(data["penalty"])))
        ax.set_xlabel("penalty for a prey met by a lone predator (the paper: -0.75)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    gain, heard = axes
    gain.axhline(0.0, color=REFERENCE_COLOR, linestyle="--", linewidth=1.1)
    gain.set_ylabel(f"COMM's gain in AUC of {ylabel}")
    gain.set_title("COMM's gain: IQM(COMM) - IQM(no COMM), normalised AUC", fontsize=10)
    heard.axhline(listening.LISTEN_RATE, color=REFERENCE_COLOR, linestyle="--", linewidth=1.1)
    heard.set_ylim(-0.02, 1.02)
    heard.set_ylabel("actions changed by swapped messages")
    heard.set_title(
        f"listening at the final evaluation (dashed: {listening.LISTEN_RATE:.0%})", fontsize=10
    )
    fig.suptitle(title, fontsize=11)
    return fig


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
SCALE_CAPTIONS = {
    "final": "the final return per agent (team return / team size, mean of the last {k} evaluations)",
    "auc": "the normalised AUC per agent (area under the return curve / budget / team size)",
    "cost": "the training cost in seconds per 1k env steps (each run's wall_time / env_steps)",
}
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
        values = runs["value"].to_numpy(dtype=float)
        point, lo, hi = stats.stratified_bootstrap_iqm(values, n_boot=n_boot, seed=seed)
        if len(values) < MIN_BAND_SEEDS:  # no CI from one or two seeds
            lo = hi = math.nan
        rows.append([statistic, method, env_spec(env).team_size, env, point, lo, hi, len(runs)])
    out = pd.DataFrame(rows, columns=SCALE_COLUMNS)
    rank = {m: i for i, m in enumerate(METHODS)}
    return out.sort_values(
        ["method", "team_size"], key=lambda c: c.map(rank).fillna(c)
    ).reset_index(drop=True)


# ---------------------------------------------------------------- drawing


def plot_curves(
    data: pd.DataFrame,
    *,
    by: str,
    title: str,
    ylabel: str,
    legend_title: str,
    ylim: tuple[float, float] | None = None,
    zoom_ylim: tuple[float, float] | None = None,
    levels: list[tuple[float, str, str]] = (),
) -> Figure:
    """One thick IQM line per value of `by` ('method' or 'hidden') with its CI band, its seeds'
    curves thin beside it, and the reference `levels`; a second panel zooms on the first
    ZOOM_STEPS env steps where the curves run well beyond them. IQM lines carry gid 'iqm',
    seed lines 'seed', bands 'band', reference lines 'level'."""
    zoom = data["eval_step"].max() > 1.5 * ZOOM_STEPS
    fig, axes = plt.subplots(
        1,
        2 if zoom else 1,
        figsize=(11.0 if zoom else 6.4, 4.6),
        layout="constrained",
        squeeze=False,
        gridspec_kw={"width_ratios": [3, 2]} if zoom else None,
    )
    axes = axes[0]
    colors = METHOD_COLORS if by == "method" else HIDDEN_COLORS
    seeds = seed_columns(data)
    handles = []
    for i, ax in enumerate(axes):
        for key, part in data.groupby(by, sort=False):
            part = part.sort_values("eval_step")
            if i == 1:
                part = part[part["eval_step"] <= ZOOM_STEPS]
            color = colors.get(key)
            x = part["eval_step"].to_numpy(dtype=float)
            n = int(part["n_seeds"].max())
            banded = n >= MIN_BAND_SEEDS
            for col in seeds:
                if part[col].notna().any():
                    ax.plot(
                        x,
                        part[col],
                        color=color,
                        linewidth=0.7,
                        alpha=0.45 if banded else 0.8,
                        gid="seed",
                    )
            if banded:
                ax.fill_between(
                    x,
                    part["ci_low"],
                    part["ci_high"],
                    color=color,
                    alpha=0.18,
                    linewidth=0,
                    gid="band",
                )
            name = f"{key}" if by == "method" else f"H = {key}"
            what = (
                f"{n} seeds" if banded else f"{n} seed{'s' if n != 1 else ''}, too few for a band"
            )
            (line,) = ax.plot(
                x, part["iqm"], color=color, linewidth=2.0, label=f"{name} ({what})", gid="iqm"
            )
            if i == 0:
                handles.append(line)
        for value, label, style in levels:
            line = ax.axhline(
                value,
                color=REFERENCE_COLOR,
                linestyle=style,
                linewidth=1.1,
                label=label,
                gid="level",
            )
            if i == 0:
                handles.append(line)
        ax.set_xlabel("environment steps")
        ax.xaxis.set_major_formatter(FuncFormatter(_steps_label))
        ax.grid(alpha=0.3)
        ax.set_ylim(*(zoom_ylim if i == 1 and zoom_ylim else ylim or ax.get_ylim()))
    axes[0].set_ylabel(ylabel)
    if zoom:
        axes[0].set_title("whole run", fontsize=10)
        axes[1].set_title(f"zoom: first {_steps_label(ZOOM_STEPS, 0)} env steps", fontsize=10)
        axes[1].set_xlim(0, ZOOM_STEPS)
    handles.append(Line2D([], [], color="grey", linewidth=2.0, label="thick: IQM over seeds"))
    if (data["n_seeds"] >= MIN_BAND_SEEDS).any():
        band = f"band: 95% bootstrap CI of the IQM (>= {MIN_BAND_SEEDS} seeds)"
        handles.append(Patch(color="grey", alpha=0.3, label=band))
    handles.append(Line2D([], [], color="grey", linewidth=0.7, label="thin: each seed"))
    fig.suptitle(title, fontsize=11)
    fig.legend(
        handles=handles,
        title=legend_title,
        loc="outside lower center",
        ncol=3 if zoom else 2,
        fontsize=8,
        title_fontsize=9,
        frameon=False,
    )
    return fig


def _ci_line(ax, x, y, ci_low, ci_high, color, label: str | None = None):
    """A line through (x, y) with 95% CI error bars where both bounds exist and hollow points
    where they do not (too few seeds); returns the error-bar artist (the legend's handle)."""
    err = np.vstack([y - np.asarray(ci_low, float), np.asarray(ci_high, float) - y])
    has = ~np.isnan(err).any(axis=0)
    bars = ax.errorbar(
        x[has],
        y[has],
        yerr=err[:, has],
        color=color,
        marker="o",
        capsize=4,
        linewidth=0,
        elinewidth=1.4,
        label=label,
    )
    ax.plot(x, y, color=color, linewidth=1.6, gid="gain")
    ax.scatter(x[~has], y[~has], facecolors="white", edgecolors=color, zorder=3)
    return bars


def plot_comm_gain(
    data: pd.DataFrame, *, title: str, ylabel: str, titles: dict[str, str]
) -> Figure:
    """Claim 5: one panel per statistic (AUC, final), COMM's gain against H (log2 axis), one
    line per sharing with 95% CI error bars (none below MIN_BAND_SEEDS seeds per arm; such
    points are hollow), and the zero line (no gain)."""
    statistics = [s for s in COMM_GAIN_STATISTICS if s in set(data["statistic"])]
    fig, axes = plt.subplots(
        1,
        len(statistics),
        figsize=(5.0 * len(statistics), 4.4),
        layout="constrained",
        squeeze=False,
    )
    hiddens = sorted(set(data["hidden"]))
    handles = {}
    for ax, statistic in zip(axes[0], statistics, strict=True):
        part = data[data["statistic"] == statistic]
        for i, (share, rows) in enumerate(part.groupby("share", sort=False)):
            rows = rows.sort_values("hidden")
            color = METHOD_COLORS[COMM_PAIRS[share][0]]
            x = rows["hidden"].to_numpy(dtype=float) * 2 ** ((i - 0.5) * 0.04)  # dodge the bars
            n = int(min(rows["n_comm"].min(), rows["n_plain"].min()))
            label = (
                f"{share}: {COMM_PAIRS[share][0]} - {COMM_PAIRS[share][1]} (>= {n} seeds per arm)"
            )
            y = rows["gain"].to_numpy(dtype=float)
            line = _ci_line(ax, x, y, rows["ci_low"], rows["ci_high"], color, label=label)
            handles.setdefault(share, line)
        ax.axhline(0.0, color=REFERENCE_COLOR, linestyle="--", linewidth=1.1, gid="level")
        ax.set_xscale("log", base=2)
        ax.set_xticks(hiddens, [str(h) for h in hiddens])
        ax.minorticks_off()
        ax.set_xlabel("GRU hidden size H")
        ax.set_ylabel(ylabel)
        ax.set_title(titles[statistic], fontsize=10)
        ax.grid(alpha=0.3)
    legend = list(handles.values()) + [
        Line2D([], [], color=REFERENCE_COLOR, linestyle="--", label="no gain (0)")
    ]
    if data["ci_low"].isna().any():
        hollow = f"hollow: fewer than {MIN_BAND_SEEDS} seeds in an arm, no CI"
        legend.append(
            Line2D(
                [], [], color="grey", marker="o", linewidth=0, markerfacecolor="white", label=hollow
            )
        )
    fig.suptitle(title, fontsize=11)
    fig.legend(
        handles=legend,
        loc="outside lower center",
        ncol=2,
        fontsize=8,
        frameon=False,
        title="COMM's gain = IQM(COMM) - IQM(no COMM); bars: 95% bootstrap CI",
        title_fontsize=9,
    )
    return fig


def plot_seed_points(
    data: pd.DataFrame,
    *,
    env: str,
    title: str,
    ylabel: str,
    levels: list[tuple[float, str, str]] = (),
) -> Figure:
    """Strip plot: one point per seed per configuration, the IQM over seeds as a black bar; on
    PredatorPrey points are coloured (and shaped) by basin; reference `levels` drawn."""
    order = data.drop_duplicates("x").sort_values("x")
    fig, ax = plt.subplots(figsize=(max(6.4, 0.6 * len(order) + 2), 4.8), layout="constrained")
    jitter = _jitter(data)
    if stats.basin_levels(env) is not None:
        for basin, part in data.groupby("basin", sort=False):
            ax.scatter(
                part["x"] + jitter[part.index],
                part["final"],
                s=26,
                color=BASIN_COLORS.get(basin, "grey"),
                marker=BASIN_MARKERS.get(basin, "o"),
                label=f"{basin} (seed)",
                zorder=3,
            )
        legend_title = "basin of each seed"
    else:
        for method, part in data.groupby("method", sort=False):
            ax.scatter(
                part["x"] + jitter[part.index],
                part["final"],
                s=26,
                color=METHOD_COLORS.get(method),
                label=method,
                zorder=3,
            )
        legend_title = "method"
    for value, label, style in levels:
        ax.axhline(
            value, color=REFERENCE_COLOR, linestyle=style, linewidth=1.1, label=label, gid="level"
        )
    iqms = data.groupby("x")["final"].agg(stats.iqm)
    ax.hlines(
        iqms.values,
        iqms.index - 0.3,
        iqms.index + 0.3,
        color="black",
        linewidth=2.0,
        label="IQM over seeds",
        zorder=4,
    )
    ax.set_xticks(order["x"], order["config"], rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("configuration (method, hidden size H)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=11)
    fig.legend(
        title=legend_title, loc="outside right center", fontsize=8, title_fontsize=9, frameon=False
    )
    return fig


def plot_listening(runs: pd.DataFrame, curves: pd.DataFrame, *, title: str, ylabel: str) -> Figure:
    """Claim 1 on the messages, three panels: per configuration (method, H) and seed, the
    final evaluation's normal return beside its return with the incoming messages swapped
    (joined by a line); the fraction of actions the swap (filled) and zeroing (hollow) change,
    with the listening threshold; and the swap's action change over training at H 64."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2), layout="constrained")
    if runs.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no run recorded message interventions", ha="center", va="center")
            ax.set_axis_off()
        fig.suptitle(title, fontsize=11)
        return fig
    configs = (
        runs[["method", "hidden"]]
        .drop_duplicates()
        .assign(rank=lambda d: [LISTENING_METHODS.index(m) for m in d["method"]])
        .sort_values(["rank", "hidden"])
    )
    x_of = {
        (m, h): i for i, (m, h) in enumerate(zip(configs["method"], configs["hidden"], strict=True))
    }
    x = np.array([x_of[(m, h)] for m, h in zip(runs["method"], runs["hidden"], strict=True)])
    # seeds side by side within a configuration, each seed's pair of points close together
    offset = x + 0.4 * _jitter(runs.assign(x=x)).to_numpy()
    colors = [METHOD_COLORS.get(m, "grey") for m in runs["method"]]
    ret, change, over = axes
    normal_x, swap_x = offset - 0.2, offset + 0.2
    for a, b, normal, swapped, c in zip(
        normal_x, swap_x, runs["normal_return"], runs["swap_return"], colors, strict=True
    ):
        ret.plot([a, b], [normal, swapped], color=c, linewidth=0.8, alpha=0.6)
    ret.scatter(normal_x, runs["normal_return"], color=colors, s=22, zorder=3)
    ret.scatter(swap_x, runs["swap_return"], facecolors="white", edgecolors=colors, s=22, zorder=3)
    ret.set_ylabel(f"{ylabel} at the final evaluation")
    ret.set_title(
        "team return: normal (filled, left)\nand with messages swapped (hollow, right)", fontsize=9
    )
    change.scatter(offset, runs["swap_change"], color=colors, s=22, zorder=3)
    change.scatter(
        offset,
        runs["zero_change"],
        facecolors="none",
        edgecolors=colors,
        s=22,
        marker="s",
        zorder=3,
    )
    change.axhline(listening.LISTEN_RATE, color=REFERENCE_COLOR, linestyle="--", linewidth=1.1)
    change.set_ylim(-0.02, 1.02)
    change.set_ylabel("fraction of agent-steps whose greedy action changes")
    change.set_title(
        "actions changed: messages swapped (filled), zeroed (squares)\n"
        f"dashed: {listening.LISTEN_RATE:.0%}, the listening threshold",
        fontsize=9,
    )
    labels = [f"{m} H{h}" for m, h in zip(configs["method"], configs["hidden"], strict=True)]
    for ax in (ret, change):
        ax.set_xlim(-0.6, len(labels) - 0.4)  # one slot per configuration, however few
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    at_h = curves[curves["hidden"] == DEFAULT_HIDDEN]
    for method, part in at_h.groupby("method", sort=False):
        c = METHOD_COLORS.get(method, "grey")
        for _, run in part.groupby("seed"):
            over.plot(run["env_steps"], run["swap_change"], color=c, linewidth=0.7, alpha=0.45)
        iqm = part.groupby("env_steps")["swap_change"].agg(stats.iqm)
        over.plot(iqm.index, iqm.values, color=c, linewidth=2.2, marker="o", ms=4, label=method)
    over.axhline(listening.LISTEN_RATE, color=REFERENCE_COLOR, linestyle="--", linewidth=1.1)
    over.set_ylim(-0.02, 1.02)
    over.set_xlabel("environment steps")
    over.set_ylabel("actions changed by the swap")
    over.set_title(
        f"actions changed by the swap over training, H {DEFAULT_HIDDEN}\n"
        "IQM over seeds (thick), each seed (thin)",
        fontsize=9,
    )
    over.xaxis.set_major_formatter(FuncFormatter(_steps_label))
    over.grid(alpha=0.3)
    handles = [
        Line2D([], [], color=METHOD_COLORS.get(m, "grey"), marker="o", label=m)
        for m in dict.fromkeys(configs["method"])
    ]
    fig.legend(
        handles=handles,
        title="method",
        loc="outside right center",
        fontsize=8,
        title_fontsize=9,
        frameon=False,
    )
    fig.suptitle(title, fontsize=11)
    return fig


def plot_scale(data: pd.DataFrame, *, title: str, ylabel: str, level: float | None) -> Figure:
    """One line per method against team size (log2 axis): IQM markers, 95% CI error bars
    (none below MIN_BAND_SEEDS seeds); an optional horizontal level (the avoid return per
    agent)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    sizes = sorted(set(data["team_size"]))
    for i, (method, part) in enumerate(data.groupby("method", sort=False)):
        part = part.sort_values("team_size")
        x = part["team_size"].to_numpy(dtype=float) * 2 ** ((i - 1.5) * 0.02)  # dodge the bars
        y = part["iqm"].to_numpy(dtype=float)
        err = np.vstack([y - part["ci_low"], part["ci_high"] - y])
        n = int(part["n_seeds"].min())
        what = f"{n} seeds" if n >= MIN_BAND_SEEDS else f"{n} seeds: no CI"
        ax.errorbar(
            x,
            y,
            yerr=np.where(np.isnan(err), 0.0, err),
            marker="o",
            capsize=3,
            linewidth=1.6,
            color=METHOD_COLORS.get(method),
            label=f"{method} ({what})",
        )
    if level is not None:
        low, high = ax.get_ylim()  # keep the level off the frame: axhline does not autoscale
        pad = 0.05 * (high - low)
        ax.set_ylim(min(low, level - pad), max(high, level + pad))
        ax.axhline(
            level,
            color=REFERENCE_COLOR,
            linestyle="--",
            linewidth=1.1,
            label=f"avoid level ({level:g})",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(int(n)) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("team size (predators)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.legend(
        title="method (IQM, 95% CI)",
        loc="outside lower center",
        ncol=2,
        fontsize=8,
        title_fontsize=9,
        frameon=False,
    )
    return fig


# ---------------------------------------------------------------- one call for all of them

SUBTITLE = "IQM over seeds (thick), 95% bootstrap CI of the IQM (band), each seed (thin)"


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
    levels = reference_levels(env)
    if spec["kind"] == "scale":
        return _scale_figure(spec, df, n_boot=n_boot, seed=seed, last_k=last_k)
    if spec["kind"] == "penalty":
        data = penalty_data(df, spec["envs"], backend, last_k=last_k, n_boot=n_boot, seed=seed)
        if data.empty:
            return None, data
        title = (
            f"Beyond the paper, PredatorPrey 7x7 (native backend), H = {DEFAULT_HIDDEN}: when "
            "does communication pay?\nIQM over seeds, 95% bootstrap CI"
        )
        return plot_penalty(data, title=title, ylabel=ylabel), data
    if spec["kind"] == "listening":
        sel = df[(df["env"] == env) & (df["backend"] == backend)]
        runs, curves = listening.listening_runs(sel), listening.listening_curves(sel)
        title = (
            f"Claim 1, {where}: do the agents listen? Incoming messages swapped for another "
            "episode's\none point per seed"
        )
        return plot_listening(runs, curves, title=title, ylabel=ylabel), runs
    if spec["kind"] == "comm_gain":
        data = comm_gain_data(
            df, env, backend, spec["shares"], last_k=last_k, n_boot=n_boot, seed=seed
        )
        if data.empty:
            return None, data
        title = f"Claim 5, {where}: COMM's gain against hidden size"
        titles = {
            "auc": "normalised AUC (the curve's average height)",
            "final": f"final performance (mean of the last {last_k} evaluations)",
        }
        return plot_comm_gain(data, title=title, ylabel=f"gain in {ylabel}", titles=titles), data
    if spec["kind"] in ("methods", "channels", "hidden"):
        if spec["kind"] == "hidden":
            configs = [(spec["method"], h) for h in HIDDEN_SIZES]
            fig5 = {"fig5a": "Fig. 5(a) ", "fig5b": "Fig. 5(b) "}.get(spec["name"][:5], "")
            by, legend = "hidden", "GRU hidden size"
            what = f"{fig5}{where}: {spec['method']}, hidden size"
        else:
            methods = METHODS if spec["kind"] == "methods" else ALL_METHODS
            configs = [(m, DEFAULT_HIDDEN) for m in methods]
            by, legend = "method", "method"
            what = (
                f"{where}: four methods, H = {DEFAULT_HIDDEN}"
                if spec["kind"] == "methods"
                else f"{where}: message channels (none, concatenation, attention), H = {DEFAULT_HIDDEN}"
            )
        data = curve_data(df, env, backend, configs, n_boot=n_boot, seed=seed)
        if data.empty:
            return None, data
        fig = plot_curves(
            data,
            by=by,
            title=f"{what}\n{SUBTITLE}",
            ylabel=ylabel,
            legend_title=legend,
            ylim=curve_limits(df, env, backend),
            zoom_ylim=curve_limits(df, env, backend, max_step=ZOOM_STEPS),
            levels=levels,
        )
        return fig, data
    data = seed_points_data(final, env, backend)
    title = f"{where}: final performance per seed\n(mean of each run's last {last_k} evaluations)"
    return plot_seed_points(
        data, env=env, title=title, ylabel=f"final {ylabel}", levels=levels
    ), data


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


def figure_caption(
    spec: dict,
    *,
    n_boot: int = stats.N_BOOT,
    seed: int = 0,
    last_k: int = DEFAULT_LAST_K,
) -> str:
    """The caption of one figure of `figure_specs` (reStructuredText, also plain text): what
    is plotted, with which estimator and CI, and the reference lines."""
    env, backend, kind = spec["env"], spec["backend"], spec["kind"]
    where = env_title(env, backend)
    col, label = primary_metric(env)
    ci = (
        "95% percentile CI from a stratified bootstrap over seeds (exact: every resample "
        f"enumerated where they can be, else {n_boot} resamples with seed {seed}), drawn only "
        f"for {MIN_BAND_SEEDS} or more seeds"
    )
    levels = "; ".join(
        f"{'dashed' if style == '--' else 'dotted'}: {text}"
        for _, text, style in reference_levels(env)
    )
    levels = f" Reference lines: {levels}." if levels else ""
    if kind in ("methods", "channels", "hidden"):
        shows = {
            "methods": f"the paper's four methods at hidden size H = {DEFAULT_HIDDEN}",
            "channels": f"the message channels (none, the paper's concatenation, attention) under PS and NPS at H = {DEFAULT_HIDDEN}",
            "hidden": f"{spec.get('method')} at every hidden size H of the grid",
        }[kind]
        text = (
            f"Learning curves on {where}: {shows}. y: {label}, column {col}, at each evaluation; x: "
            f"environment steps. Thick line: IQM (interquartile mean) over seeds, the replication "
            f"report's estimator (with fewer than 4 seeds nothing is trimmed: the mean); band: its {ci}; thin lines: each seed's own curve. The right "
            f"panel (where runs are long enough) zooms on the first {ZOOM_STEPS:,} env steps. "
            f"Every curve figure of this environment and backend has the same y-limits."
        )
        if spec["name"].startswith("fig5"):
            text += f" The paper's Figure 5({spec['name'][4]})."
        return text + levels
    if kind == "comm_gain":
        return (
            f"Claim 5 on {where}: COMM's gain, IQM(COMM) - IQM(no COMM) over seeds, against the "
            f"GRU hidden size H, for {' and '.join(spec['shares'])}, on the normalised AUC (left: "
            f"the curve's average height over training, which decides the report's verdicts) "
            f"and on final performance (right: mean of each run's last {last_k} evaluations), in "
            f"units of {label}. Error bars: {ci} per arm (hollow points: fewer). The claim "
            f"expects the gain to shrink as H grows. Dashed: no gain."
        )
    if kind == "penalty":
        return (
            "Beyond the paper: the penalty study (PredatorPrey 7x7, H = "
            f"{DEFAULT_HIDDEN}, the lone-predator penalty at the paper's -0.75, ma-gym's -0.5, "
            "-0.25 and 0). Left: COMM's gain, IQM(COMM) - IQM(no COMM) of the normalised AUC, "
            "for PS and NPS. Right: the fraction of agent-steps whose greedy action changes when "
            "the incoming messages are swapped for another episode's, at each run's final "
            f"evaluation; dashed: {listening.LISTEN_RATE:.0%}, above which the report says the "
            f"agents listen. Error bars: {ci} (hollow points: fewer)."
        )
    if kind == "listening":
        return (
            f"Claim 1's listening test on {where} (ficomm.listening): at a comm run's final "
            "evaluation, the same greedy episodes are played with every agent's incoming "
            "messages replaced, its own untouched: swapped for the messages the same senders "
            "sent at the same step of another evaluation episode (keeps their distribution, "
            "removes their information), or zeroed. Left: the normal team return (filled) and "
            "the return under the swap (hollow) of each seed, per method and hidden size. "
            "Middle: the fraction of agent-steps whose greedy action changes, on the unmodified "
            "episodes' states, under the swap (filled) and zeroing (hollow squares); dashed: "
            f"{listening.LISTEN_RATE:.0%}, above which the report says the agents listen. "
            f"Right: the swap's action change at every evaluation with interventions, H = "
            f"{DEFAULT_HIDDEN}: IQM over seeds (thick) and each seed (thin). Runs from before "
            "interventions were recorded are absent."
        )
    if kind == "seeds":
        basins = (
            " Points are coloured by basin: capture above the avoid band, avoid within it, "
            "penalised below."
            if stats.basin_levels(env) is not None
            else ""
        )
        return (
            f"Final performance on {where}: one point per run (seed) for every configuration "
            f"(method, hidden size), {label}, mean of the run's last {last_k} evaluations; black "
            f"bar: IQM over seeds.{basins}" + levels
        )
    shows = SCALE_CAPTIONS[spec["statistic"]].format(k=last_k)
    return (
        f"Beyond the paper: {env_spec(env).title.split(' ')[0]} at several team sizes, H = "
        f"{DEFAULT_HIDDEN}, {shows} against team size, one line per method: IQM over seeds with "
        f"its {ci}."
        + (" Dashed: the avoid level per agent." if spec["statistic"] != "cost" else "")
    )


SAVE_PAD_INCHES = 0.08


def save_figure(fig: Figure, path: str | Path, **kwargs) -> None:
    """Save with the bounding box of everything drawn (bbox_inches='tight'), so that no title,
    label or legend is clipped whatever its length."""
    fig.savefig(path, bbox_inches="tight", pad_inches=SAVE_PAD_INCHES, **kwargs)


def write_figures(
    df: pd.DataFrame,
    out_dir: str | Path,
    *,
    last_k: int = DEFAULT_LAST_K,
    n_boot: int = stats.N_BOOT,
    seed: int = 0,
) -> dict:
    """Write every figure (PDF, PNG, CSV sidecar) of the main grid and `figures.json`; the
    files of figures an earlier `figures.json` listed and this one does not are removed, so
    that no stale figure survives a change of what is drawn."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        before = json.loads((out_dir / "figures.json").read_text())["figures"]
        old_files = {f for fig in before for f in fig["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        old_files = set()
    grid = main_grid(df)
    final = final_performance(grid, last_k)
    manifest = {
        "final_performance": f"mean of each run's last {last_k} evaluations of the primary metric",
        "curves": "IQM over seeds at each nominal evaluation step (env_steps floored to the "
        "evaluation interval); band = 95% percentile stratified-bootstrap CI of the IQM over seeds "
        f"(exact where every resample can be enumerated, else {n_boot} resamples, seed {seed}), "
        f"only with at least {MIN_BAND_SEEDS} seeds; thin lines: "
        "each seed",
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
            save_figure(fig, path, dpi=150 if ext == "png" else None)
            files.append(path.name)
        plt.close(fig)
        data.to_csv(out_dir / f"{spec['name']}.csv", index=False)
        caption = figure_caption(spec, n_boot=n_boot, seed=seed, last_k=last_k)
        (out_dir / f"{spec['name']}.rst").write_text(caption + "\n")
        files += [f"{spec['name']}.csv", f"{spec['name']}.rst"]
        metric = "wall_time" if spec.get("statistic") == "cost" else primary_metric(spec["env"])[0]
        manifest["figures"].append({**spec, "files": files, "metric": metric, "caption": caption})
    (out_dir / "figures.json").write_text(json.dumps(manifest, indent=2) + "\n")
    new_files = {f for fig in manifest["figures"] for f in fig["files"]}
    for name in old_files - new_files:
        if Path(name).name == name:  # a bare file name, as write_figures lists them
            (out_dir / name).unlink(missing_ok=True)
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
