"""The replication report: verdicts follow the data, few seeds stay inconclusive, the
seeds-to-decide rule, missing arms, and the written report."""

from __future__ import annotations

import json
import math

import pytest
from synthetic_runs import make_runs

from ficomm.analysis.aggregate import aggregate_runs
from ficomm.analysis.claims import (
    combine,
    load_reference,
    render_markdown,
    replication_report,
    write_report,
)
from ficomm.analysis.stats import Z95

COMM_GAIN = {
    ("ps", 32): 12.0,
    ("ps", 64): 8.0,
    ("ps", 128): 4.0,
    ("nps", 32): 6.0,
    ("nps", 64): 4.0,
    ("nps", 128): 2.0,
}


def paper_world(env, share, comm, hidden, seed):
    """Every claim of the paper holds, by a wide margin."""
    jitter = 0.3 * (seed - 2)
    if env == "predator_prey":
        return (
            (10.0 if share == "ps" else 5.0)
            + (COMM_GAIN[(share, hidden)] if comm else 0.0)
            + jitter
        )
    return (0.6 if share == "ps" else 0.4) + 0.01 * comm + 0.01 * jitter


def reversed_world(env, share, comm, hidden, seed):
    """COMM hurts NPS on PredatorPrey (claim 1 fails) and decides 3s_vs_5z (claim 4 fails)."""
    jitter = 0.3 * (seed - 2)
    if env == "predator_prey":
        return (10.0 if share == "ps" else 5.0) - (4.0 if comm and share == "nps" else 0.0) + jitter
    return 0.3 + 0.4 * comm + 0.01 * jitter


def _report(tmp_path, level, seeds=(0, 1, 2, 3, 4), **kw):
    make_runs(tmp_path, level=level, seeds=seeds, **kw)
    return replication_report(aggregate_runs([tmp_path]), n_boot=2000, seed=0)


def _verdicts(report):
    return {c["id"]: c["verdict"] for c in report["claims"]}


def test_claims_supported_when_the_data_say_so(tmp_path):
    report = _report(tmp_path, paper_world)
    assert _verdicts(report) == {i: "supported" for i in range(1, 6)}
    c1 = report["claims"][0]
    primary = [r for r in c1["contrasts"] if r["primary"]]
    assert len(primary) == 1 and primary[0]["label"].startswith("predator_prey H64")
    assert primary[0]["effect"] == pytest.approx(4.0, abs=0.5)
    assert primary[0]["ci_low"] > 0
    c3 = next(r for r in report["claims"][2]["contrasts"] if r["primary"])
    assert c3["effect"] == pytest.approx(8.0 - 4.0, abs=0.7)
    c5 = [r for r in report["claims"][4]["contrasts"] if r["primary"]]
    assert [round(r["effect"]) for r in c5] == [8, 4]


def test_claims_contradicted_when_the_data_disagree(tmp_path):
    v = _verdicts(_report(tmp_path, reversed_world))
    assert v[1] == "contradicted" and v[4] == "contradicted"
    assert v[3] == "supported"  # COMM helps NPS less than PS here: the interaction holds


def test_two_seeds_are_inconclusive_with_a_ci(tmp_path):
    report = _report(tmp_path, paper_world, seeds=(0, 1))
    for claim in report["claims"]:
        assert claim["verdict"] == "inconclusive"
        assert claim["seeds_to_decide"] >= 3
        for r in claim["contrasts"]:
            assert math.isfinite(r["ci_low"]) and r["ci_low"] <= r["ci_high"]
            assert "fewer than 3 seeds" in r["note"]


def test_seeds_to_decide_follows_the_documented_rule(tmp_path):
    noisy = lambda e, s, c, h, seed: paper_world(e, s, c, h, seed) + 6.0 * math.sin(7 * seed + h)  # noqa: E731
    report = _report(tmp_path, noisy, envs=["predator_prey"])
    undecided = [
        r
        for c in report["claims"]
        for r in c["contrasts"]
        if r["verdict"] == "inconclusive" and r["kind"] == "superiority"
    ]
    assert undecided, "the noisy world should leave some contrast undecided"
    for r in undecided:
        sigma = math.sqrt(sum(a["weight"] ** 2 * a["sd"] ** 2 for a in r["arms"].values()))
        n_now = min(a["n"] for a in r["arms"].values())
        rule = math.ceil((Z95 * sigma / abs(r["effect"])) ** 2)
        assert r["seeds_to_decide"] == max(rule, n_now + 1, 3)


def test_missing_arms_are_untested(tmp_path):
    report = _report(tmp_path, paper_world, hiddens=[64], seeds=(0, 1, 2))
    v = _verdicts(report)
    assert v[5] == "untested"
    assert v[1] == "supported"
    claim4 = report["claims"][3]
    assert v[4] == "inconclusive"  # H 64 holds, H 32/128 have no runs
    assert any(
        "no runs for" in r["note"] and "PS+IQL H32" in r["note"] for r in claim4["contrasts"]
    )
    assert combine([]) == ("untested", None)


def test_win_rate_floor_makes_claim_4_inconclusive(tmp_path):
    report = _report(tmp_path, lambda e, s, c, h, seed: 0.0, envs=["3s_vs_5z"], seeds=(0, 1, 2))
    claim4 = report["claims"][3]
    assert claim4["verdict"] == "inconclusive"
    assert all("no method wins" in r["note"] for r in claim4["contrasts"] if r["primary"])


def test_report_files_and_reference(tmp_path):
    make_runs(tmp_path / "runs", level=paper_world, seeds=(0, 1, 2))
    reference = load_reference("config/reference.yaml")
    assert all(reference["claims"][i]["value"] == "unknown" for i in range(1, 6))
    df = aggregate_runs([tmp_path / "runs"])
    report = replication_report(df, reference, n_boot=1000)
    write_report(report, tmp_path / "pf")
    data = json.loads((tmp_path / "pf" / "replication.json").read_text())  # standard JSON
    assert [c["id"] for c in data["claims"]] == [1, 2, 3, 4, 5]
    assert {(g["env"], g["backend"], g["seeds_min"]) for g in data["data"]["groups"]} == {
        ("predator_prey", "native", 3),
        ("3s_vs_5z", "smax", 3),
    }
    md = (tmp_path / "pf" / "replication.md").read_text()
    assert "| 3s_vs_5z | smax | 36 | 12 | 3-3 | 0 |" in md
    assert "value unknown" in md and "Claim 5" in md
    # A known reference value is compared with our CI.
    effect = next(r for r in report["claims"][0]["contrasts"] if r["primary"])
    known = {"claims": {1: {"direction": "NPS+IQL+COMM > NPS+IQL", "value": effect["effect"]}}}
    again = replication_report(df, known, n_boot=1000)
    assert "inside our 95% CI for: predator_prey H64" in again["claims"][0]["reference_comparison"]
    far = {"claims": {1: {"value": effect["ci_high"] + 100}}}
    text = replication_report(df, far, n_boot=1000)["claims"][0]
    assert "none of the primary contrasts" in text["reference_comparison"]
    assert "none of the primary" in render_markdown({**report, "claims": [text]})
    # Per-configuration reference values are set beside our mean and CI.
    assert report["reference_values"] == [] and "values are unknown" in md
    mean = report["claims"][0]["contrasts"][1]["arms"]["A"]["mean"]  # NPS+IQL+COMM H64
    entry = {"env": "predator_prey", "method": "NPS+IQL+COMM", "hidden": 64}
    vals = replication_report(
        df,
        {"final_performance": [{**entry, "value": mean}, {**entry, "value": "unknown"}]},
        n_boot=500,
    )["reference_values"]
    assert vals[0]["reference_inside_ci"] is True and vals[0]["mean"] == pytest.approx(mean)
    assert vals[0]["backend"] == "native" and vals[0]["n_seeds"] == 3
    assert vals[1]["reference_inside_ci"] is None
