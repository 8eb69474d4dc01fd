"""Which figures a grid produces, and their file names, without importing matplotlib.

The workflow lists these files as outputs at every Snakemake start (also inside each SLURM
job), so this module stays light; `figures.py` draws them.
"""

from __future__ import annotations

import pandas as pd

from ficomm.analysis.aggregate import (
    ATTENTION_METHODS,
    DEFAULT_HIDDEN,
    METHODS,
    env_title,
    method_slug,
)
from ficomm.envs import ENV_NAMES, PENALTY_FAMILY, env_spec

# Figures against team size (beyond the paper): what each plots.
SCALE_STATISTICS = ("final", "auc", "cost")

# The paper's Figure 5: PS+IQL (a) and PS+IQL+COMM (b) across hidden sizes on 3s_vs_5z.
PAPER_FIGURE_NAMES = {
    ("3s_vs_5z", "PS+IQL"): "fig5a_3s_vs_5z_ps_iql_hidden",
    ("3s_vs_5z", "PS+IQL+COMM"): "fig5b_3s_vs_5z_ps_iql_comm_hidden",
}


def figure_specs(df: pd.DataFrame) -> list[dict]:
    """What to draw for the data: one dict per figure (name, kind, env, backend, method...).

    Needs only the columns env, backend, method and hidden, so a workflow can list the files
    a grid will produce before any run exists; every listed figure has runs to plot.
    """
    specs = []
    for env, backend in env_backends(df):
        sel = df[(df["env"] == env) & (df["backend"] == backend)]
        if (sel["hidden"] == DEFAULT_HIDDEN).any():
            specs.append(
                dict(
                    name=f"curves_{env}_h{DEFAULT_HIDDEN}_{backend}",
                    kind="methods",
                    env=env,
                    backend=backend,
                )
            )
        at_h = set(sel.loc[sel["hidden"] == DEFAULT_HIDDEN, "method"])
        if at_h & set(ATTENTION_METHODS):  # beyond the paper: the three channels side by side
            specs.append(
                dict(
                    name=f"channels_{env}_h{DEFAULT_HIDDEN}_{backend}",
                    kind="channels",
                    env=env,
                    backend=backend,
                )
            )
        for method in [m for m in METHODS if m in set(sel["method"])]:
            if sel.loc[sel["method"] == method, "hidden"].nunique() < 2:
                continue  # a sweep of one hidden size shows no sweep
            stem = PAPER_FIGURE_NAMES.get((env, method), f"hidden_{env}_{method_slug(method)}")
            specs.append(
                dict(
                    name=f"{stem}_{backend}", kind="hidden", env=env, backend=backend, method=method
                )
            )
        if comm_gain_shares(sel):
            specs.append(
                dict(
                    name=f"comm_gain_hidden_{env}_{backend}",
                    kind="comm_gain",
                    env=env,
                    backend=backend,
                    shares=comm_gain_shares(sel),
                )
            )
        specs.append(
            dict(name=f"final_seeds_{env}_{backend}", kind="seeds", env=env, backend=backend)
        )
        if set(sel["method"]) & set(LISTENING_METHODS):
            specs.append(
                dict(name=f"listening_{env}_{backend}", kind="listening", env=env, backend=backend)
            )
    for backend, levels in penalty_groups(df):
        specs.append(
            dict(
                name=f"penalty_h{DEFAULT_HIDDEN}_{backend}",
                kind="penalty",
                env=levels[0][1],
                envs=[e for _, e in levels],
                backend=backend,
            )
        )
    for family, backend, sizes in scale_groups(df):
        for statistic in SCALE_STATISTICS:
            specs.append(
                dict(
                    name=f"scale_{statistic}_{family}_h{DEFAULT_HIDDEN}_{backend}",
                    kind="scale",
                    statistic=statistic,
                    family=family,
                    env=sizes[0][1],
                    envs=[e for _, e in sizes],
                    backend=backend,
                )
            )
    return specs


# Methods with a message channel: their runs record message interventions (claim 1's test).
LISTENING_METHODS = ("NPS+IQL+COMM", "PS+IQL+COMM", *ATTENTION_METHODS)

# Claim 5: COMM's gain against H, per parameter sharing (the COMM and the no-COMM method).
COMM_PAIRS = {"PS": ("PS+IQL+COMM", "PS+IQL"), "NPS": ("NPS+IQL+COMM", "NPS+IQL")}


def comm_gain_shares(sel: pd.DataFrame) -> list[str]:
    """The sharings ("PS", "NPS") of one (env, backend) whose COMM and no-COMM methods both
    have runs at two or more hidden sizes: claim 5's figure needs a gain at two sizes."""
    shares = []
    for share, (comm, plain) in COMM_PAIRS.items():
        both = set(sel.loc[sel["method"] == comm, "hidden"]) & set(
            sel.loc[sel["method"] == plain, "hidden"]
        )
        if len(both) > 1:
            shares.append(share)
    return shares


def scale_groups(df: pd.DataFrame) -> list[tuple[str, str, list[tuple[int, str]]]]:
    """(family, backend, [(team size, env), ...] smallest first) for every env family (registry
    entries differing in team size) with H 64 runs at two or more team sizes in one backend."""
    groups: dict[tuple[str, str], set[tuple[int, str]]] = {}
    for env, backend in env_backends(df[df["hidden"] == DEFAULT_HIDDEN]):
        spec = env_spec(env) if env in ENV_NAMES else None
        if spec is None or not spec.team_size:
            continue
        groups.setdefault((spec.family_name, backend), set()).add((spec.team_size, env))
    return [
        (family, backend, sorted(sizes))
        for (family, backend), sizes in sorted(groups.items())
        if len({n for n, _ in sizes}) > 1
    ]


def penalty_groups(df: pd.DataFrame) -> list[tuple[str, list[tuple[float, str]]]]:
    """(backend, [(penalty, env), ...] harshest first) where H 64 runs exist at two or more
    lone-predator penalties of the penalty study's family (the registry's `penalty`)."""
    groups: dict[str, set[tuple[float, str]]] = {}
    for env, backend in env_backends(df[df["hidden"] == DEFAULT_HIDDEN]):
        spec = env_spec(env) if env in ENV_NAMES else None
        if spec is None or spec.family_name != PENALTY_FAMILY or spec.penalty is None:
            continue
        groups.setdefault(backend, set()).add((spec.penalty, env))
    return [(b, sorted(levels)) for b, levels in sorted(groups.items()) if len(levels) > 1]


def env_backends(df: pd.DataFrame) -> list[tuple[str, str]]:
    """The (env, backend) pairs in the data: each gets its own figures."""
    return sorted({(e, b) for e, b in zip(df["env"], df["backend"], strict=True)})


# ---------------------------------------------------------------- the Snakemake report

# What each kind of figure shows: its subcategory in the Snakemake report.
KIND_TITLES = {
    "methods": "learning curves: the four methods at H 64",
    "channels": "learning curves: message channels at H 64",
    "hidden": "learning curves: hidden-size sweeps",
    "comm_gain": "claim 5: COMM's gain against hidden size",
    "seeds": "final performance per seed",
    "listening": "claim 1: do the agents listen to their messages?",
    "scale": "against team size",
    "penalty": "when does communication pay? against the penalty",
}


def report_category(spec: dict) -> tuple[str, str]:
    """(category, subcategory) of a figure in the Snakemake report: where it was measured
    (environment and backend, never mixed), then what it shows."""
    if spec["kind"] == "penalty":
        backend = env_spec(spec["env"]).backends[spec["backend"]].title
        return f"Figures: PredatorPrey penalty study ({backend} backend)", KIND_TITLES["penalty"]
    if spec["kind"] == "scale":
        spec_env = env_spec(spec["env"])
        family = spec_env.title.split(" ")[0]  # "PredatorPrey 7x7" -> "PredatorPrey"
        where = f"{family} team sizes ({spec_env.backends[spec['backend']].title} backend)"
    else:
        where = env_title(spec["env"], spec["backend"])
    return f"Figures: {where}", KIND_TITLES[spec["kind"]]


def report_label(spec: dict) -> str:
    """A figure's label in its report subcategory (its method, statistic or contents)."""
    if spec["kind"] == "hidden":
        return spec["method"]
    if spec["kind"] == "scale":
        return {"final": "final return", "auc": "AUC", "cost": "training cost"}[spec["statistic"]]
    if spec["kind"] == "comm_gain":
        return "COMM minus no COMM, " + " and ".join(spec["shares"])
    return {
        "methods": "four methods",
        "channels": "six methods",
        "seeds": "every run",
        "listening": "message interventions",
        "penalty": "COMM's gain and listening",
    }[spec["kind"]]
