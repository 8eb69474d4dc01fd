"""Claim 1 on the messages: the listening test's statistics, verdicts and words, on the shipped
replication's curves with intervention columns whose answer the test chooses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ficomm.analysis import listening
from ficomm.analysis.aggregate import load_runs
from ficomm.analysis.claims import render_markdown, replication_report

REPLICATION = Path(__file__).resolve().parents[2] / "replication" / "all_runs.csv"


def _with_interventions(change: dict[str, float], gain: dict[str, float]) -> pd.DataFrame:
    """The shipped H 64 runs, each comm run's last evaluation given intervention columns:
    per method an action-change rate and a return change under the swap (small per-seed
    spread around them)."""
    df = load_runs(REPLICATION)
    df = df[df["hidden"] == 64].copy()
    for col in ("intervene_swap_action_change", "intervene_swap_return_mean"):
        df[col] = np.nan
    for c in ("intervene_zero_action_change", "intervene_zero_return_mean", "signal_action_mi"):
        df[c] = np.nan
    for (method, seed), run in df.groupby(["method", "seed"]):
        if method not in change:
            continue
        last = run["env_steps"].idxmax()
        jitter = 0.01 * seed
        df.loc[last, "intervene_swap_action_change"] = change[method] + jitter / 10
        df.loc[last, "intervene_swap_return_mean"] = (
            df.loc[last, "eval_return_mean"] + gain[method] - jitter
        )
        df.loc[last, "intervene_zero_action_change"] = change[method]
        df.loc[last, "intervene_zero_return_mean"] = df.loc[last, "eval_return_mean"]
        df.loc[last, "signal_action_mi"] = 0.0
    return df


def test_listening_runs_take_each_runs_last_intervention():
    df = _with_interventions(
        {"NPS+IQL+COMM": 0.0, "PS+IQL+COMM": 0.4}, {"NPS+IQL+COMM": 0.0, "PS+IQL+COMM": -9.0}
    )
    runs = listening.listening_runs(df)
    assert len(runs) == 10 and set(runs["method"]) == {"NPS+IQL+COMM", "PS+IQL+COMM"}
    ps = runs[runs["method"] == "PS+IQL+COMM"].sort_values("seed")
    assert ps["swap_gain"].to_numpy() == pytest.approx(-9.0 - 0.01 * ps["seed"].to_numpy())
    assert (ps["env_steps"] > 900_000).all()


def test_claim1_decided_on_the_messages():
    df = _with_interventions(
        {"NPS+IQL+COMM": 0.0, "PS+IQL+COMM": 0.4}, {"NPS+IQL+COMM": 0.0, "PS+IQL+COMM": -9.0}
    )
    report = replication_report(df)
    c1 = next(c for c in report["claims"] if c["id"] == 1)
    assert c1["deciding_statistic"] == "listening"
    arms = {(a["method"], a["hidden"]): a for a in c1["listening"]}
    nps, ps = arms[("NPS+IQL+COMM", 64)], arms[("PS+IQL+COMM", 64)]
    # the independent agents' actions do not change: contradicted, in plain words
    assert nps["primary"] and nps["verdict"] == "contradicted" and c1["verdict"] == "contradicted"
    assert "change almost nothing they do" in nps["sentence"]
    # the positive control listens and pays for it
    assert not ps["primary"] and ps["verdict"] == "supported"
    assert "act on their messages, and the messages pay" in ps["sentence"]
    change = next(s for s in ps["statistics"] if s["statistic"] == "swap_change")
    assert change["ci_method"] == "exact" and change["ci_low"] > listening.LISTEN_RATE
    # H 32 / H 128 recorded nothing here: untested, and not deciding
    assert arms[("NPS+IQL+COMM", 32)]["verdict"] == "untested"
    # the AUC contrast stays beside it, labelled as what it measures
    assert c1["verdicts_by_statistic"]["auc"]["verdict"] in ("inconclusive", "supported")
    md = render_markdown(report)
    assert "leave the penalised start" in md and "| listening test |" in md


def test_listening_that_pays_supports_claim1_and_few_seeds_decide_nothing():
    df = _with_interventions(
        {"NPS+IQL+COMM": 0.3, "PS+IQL+COMM": 0.4}, {"NPS+IQL+COMM": -2.0, "PS+IQL+COMM": -9.0}
    )
    c1 = next(c for c in replication_report(df)["claims"] if c["id"] == 1)
    assert c1["verdict"] == "supported"
    few = df[~((df["method"] == "NPS+IQL+COMM") & (df["seed"] >= 2))]
    c1 = next(c for c in replication_report(few)["claims"] if c["id"] == 1)
    nps = next(a for a in c1["listening"] if a["primary"])
    assert c1["verdict"] == "too few seeds" and "2 runs with interventions" in nps["note"]


def test_no_interventions_leave_claim1_untested():
    df = load_runs(REPLICATION)
    df = df.drop(columns=[c for c in df if c.startswith(("intervene_", "signal_"))])
    c1 = next(c for c in replication_report(df)["claims"] if c["id"] == 1)
    assert c1["verdict"] == "untested" and "recorded interventions" in c1["outlook"]


def test_listening_figure(tmp_path):
    from PIL import Image

    from ficomm.analysis.figures import write_figures

    df = _with_interventions(
        {"NPS+IQL+COMM": 0.0, "PS+IQL+COMM": 0.4}, {"NPS+IQL+COMM": 0.0, "PS+IQL+COMM": -9.0}
    )
    manifest = write_figures(df, tmp_path)
    (spec,) = [f for f in manifest["figures"] if f["kind"] == "listening"]
    data = pd.read_csv(tmp_path / f"{spec['name']}.csv")
    assert len(data) == 10 and set(data["method"]) == {"NPS+IQL+COMM", "PS+IQL+COMM"}
    assert "swapped" in spec["caption"]
    with Image.open(tmp_path / f"{spec['name']}.png") as im:
        assert im.width > 1000
    # a grid whose comm runs recorded no interventions still gets its (empty) figure
    plain = df.drop(columns=[c for c in df if c.startswith(("intervene_", "signal_"))])
    manifest = write_figures(plain, tmp_path / "plain")
    assert any(f["kind"] == "listening" for f in manifest["figures"])
    # a rewrite without the comm runs removes the listening figure's files
    write_figures(df[~df["method"].str.contains("COMM")], tmp_path)
    assert not list(tmp_path.glob("listening_*")) and (tmp_path / "figures.json").exists()


PENALTY_ENVS = [
    "predator_prey_p075",
    "predator_prey_p050",
    "predator_prey_p025",
    "predator_prey_p000",
]


def test_penalty_study_claim_and_figure(tmp_path):
    """Claim 8 and its figure on a synthetic penalty study where NPS agents listen only once
    the penalty is gone."""
    from synthetic_runs import make_runs

    from ficomm.analysis.aggregate import aggregate_runs
    from ficomm.analysis.figures import write_figures

    def hears_at_zero(env, share, comm, hidden, seed):
        if not comm:
            return None
        if share == "ps" or env == "predator_prey_p000":
            return 0.3 + 0.01 * seed, -3.0 - 0.1 * seed
        return 0.0, 0.0

    make_runs(tmp_path / "runs", envs=PENALTY_ENVS, hiddens=[64], listening=hears_at_zero)
    df = aggregate_runs([tmp_path / "runs"])
    report = replication_report(df)
    c8 = next(c for c in report["beyond_paper"] if c["id"] == 8)
    assert c8["verdict"] == "supported" and c8["deciding_statistic"] == "listening"
    by = {(a["env"], a["method"]): a["verdict"] for a in c8["listening"]}
    assert by[("predator_prey_p075", "NPS+IQL+COMM")] == "contradicted"
    assert by[("predator_prey_p000", "NPS+IQL+COMM")] == "supported"
    manifest = write_figures(df, tmp_path / "figs")
    (spec,) = [f for f in manifest["figures"] if f["kind"] == "penalty"]
    data = pd.read_csv(tmp_path / "figs" / f"{spec['name']}.csv")
    heard = data[(data["panel"] == "listening") & (data["series"] == "NPS+IQL+COMM")]
    assert heard.sort_values("penalty")["iqm"].round(2).tolist() == [0.0, 0.0, 0.0, 0.31]
    assert set(data.loc[data["panel"] == "gain", "series"]) == {"PS", "NPS"}
