"""The replication report: verdicts follow the data, few seeds stay inconclusive, the
seeds-to-decide rule and its direction, missing arms, learning speed decided by the AUC, censored
threshold steps counted, runs left out by name, the written report, verdicts that do not depend
on the bootstrap's seed, and borderline Monte-Carlo bounds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from synthetic_runs import make_runs, write_run_dir

from ficomm.analysis import stats
from ficomm.analysis.aggregate import aggregate_runs, load_runs
from ficomm.analysis.claims import (
    STATISTICS,
    THRESHOLDS,
    combine,
    load_reference,
    render_markdown,
    replication_report,
    run_statistics,
    verdict_grid,
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
    final = primary[0]["statistics"]["final"]
    assert final["effect"] == pytest.approx(4.0, abs=0.5) and final["ci_low"] > 0
    # The synthetic curves rise linearly over the first half of the budget, so the AUC (the
    # curve's average height) sees 3/4 of a level difference.
    assert primary[0]["deciding_statistic"] == "auc"
    assert primary[0]["effect"] == primary[0]["statistics"]["auc"]["effect"]
    assert primary[0]["effect"] == pytest.approx(0.75 * 4.0, abs=0.4)
    assert primary[0]["ci_low"] > 0
    assert primary[0]["statistics"]["auc"]["poi"] == 1.0  # every COMM seed above every other
    c3 = next(r for r in report["claims"][2]["contrasts"] if r["primary"])
    assert c3["statistics"]["final"]["effect"] == pytest.approx(8.0 - 4.0, abs=0.7)
    assert c3["statistics"]["auc"]["poi"] is None  # an interaction of 4 arms has none
    c5 = [r for r in report["claims"][4]["contrasts"] if r["primary"]]
    assert [round(r["statistics"]["final"]["effect"]) for r in c5] == [8, 4]
    assert [round(r["effect"]) for r in c5] == [6, 3]
    for claim in report["claims"]:
        assert claim["verdicts_by_statistic"]["final"]["verdict"] == "supported"


def deaf(env, share, comm, hidden, seed):
    """NPS agents ignore their messages; PS agents act on them (the positive control)."""
    if not comm or env != "predator_prey":
        return None
    return (0.0, 0.0) if share == "nps" else (0.4, -5.0)


def test_claims_contradicted_when_the_data_disagree(tmp_path):
    v = _verdicts(_report(tmp_path, reversed_world, listening=deaf))
    assert v[1] == "contradicted" and v[4] == "contradicted"
    assert v[3] == "supported"  # COMM helps NPS less than PS here: the interaction holds


def test_two_seeds_are_too_few_and_give_no_ci(tmp_path):
    report = _report(tmp_path, paper_world, seeds=(0, 1))
    for claim in report["claims"]:
        assert claim["verdict"] in ("too few seeds", "untested")
        for r in claim["contrasts"]:
            for s in r["statistics"].values():
                if s["verdict"] == "untested":
                    continue
                assert s["verdict"] == "too few seeds" and s["ci_low"] is None
                assert s["seeds_to_decide"] == 3 and s["decides_toward"] is None
                assert "too few seeds" in s["note"] and "has 2 (a verdict needs 3" in s["note"]
    claim1 = report["claims"][0]
    assert claim1["verdict"] == "too few seeds" and claim1["decides_toward"] is None
    row = "| 1 | **too few seeds** | listening test | too few seeds | too few seeds | too few seeds"
    assert row + " | - | - | yes |" in render_markdown(report)


def test_more_seeds_asked_than_run_keeps_the_ci_but_gives_no_verdict(tmp_path):
    make_runs(tmp_path, level=paper_world, seeds=(0, 1, 2), envs=["predator_prey"], hiddens=[64])
    report = replication_report(aggregate_runs([tmp_path]), min_seeds=4)
    (r,) = [r for r in report["claims"][0]["contrasts"] if r["primary"]]
    assert r["verdict"] == "too few seeds" and r["ci_method"] == "exact"
    assert r["ci_low"] > 0  # three seeds: a CI, but not enough for a verdict here
    assert "NPS+IQL+COMM H64 has 3, NPS+IQL H64 has 3 (a verdict needs 4" in r["note"]


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
        # Seeds to decide in the direction the effect points, and that direction named.
        toward = "supported" if r["effect"] > 0 else "contradicted"
        assert r["decides_toward"] == toward
        assert ("points against the claim" in r["note"]) == (toward == "contradicted")


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
    assert combine([])["verdict"] == "untested"


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
    # reference.yaml's values are final-performance effects: compared with that statistic.
    effect = next(r for r in report["claims"][0]["contrasts"] if r["primary"])["statistics"][
        "final"
    ]
    known = {"claims": {1: {"direction": "NPS+IQL+COMM > NPS+IQL", "value": effect["effect"]}}}
    again = replication_report(df, known, n_boot=1000)
    assert "inside our 95% CI for: predator_prey H64" in again["claims"][0]["reference_comparison"]
    far = {"claims": {1: {"value": effect["ci_high"] + 100}}}
    text = replication_report(df, far, n_boot=1000)["claims"][0]
    assert "none of the primary contrasts" in text["reference_comparison"]
    assert "none of the primary" in render_markdown({**report, "claims": [text]})
    # Per-configuration reference values are set beside our mean and CI.
    # config/reference.yaml: the authors' released PS+IQL policies at each H (-4.0)
    refs = report["reference_values"]
    assert [(r["method"], r["hidden"], r["reference"]) for r in refs] == [
        ("PS+IQL", h, -4.0) for h in (32, 64, 128)
    ]
    assert all("authors' released" in r["source"] for r in refs) and "released" in md
    assert "No per-configuration reference values" in render_markdown(
        replication_report(df, {}, n_boot=200)
    )
    # NPS+IQL+COMM H64, its final performance
    mean = report["claims"][0]["contrasts"][1]["statistics"]["final"]["arms"]["A"]["mean"]
    entry = {"env": "predator_prey", "method": "NPS+IQL+COMM", "hidden": 64}
    vals = replication_report(
        df,
        {"final_performance": [{**entry, "value": mean}, {**entry, "value": "unknown"}]},
        n_boot=500,
    )["reference_values"]
    assert vals[0]["reference_inside_ci"] is True and vals[0]["mean"] == pytest.approx(mean)
    assert vals[0]["backend"] == "native" and vals[0]["n_seeds"] == 3
    assert vals[1]["reference_inside_ci"] is None


# ---------------------------------------------------------------- learning curves

# Six seed levels with the same multiset in every arm: final performance cannot tell arms apart.
LEVELS = (-3.0, -1.5, 0.0, 0.0, 1.5, 3.0)
FAST, SLOW = 0.15, 0.6  # budget fraction to reach the level


def _same_end_world(env, share, comm, hidden, seed):
    return 10.0 + LEVELS[(seed + 3 * int(comm)) % 6]


def _comm_faster(env, share, comm, hidden, seed):
    return FAST if comm else SLOW


def test_faster_learning_with_equal_final_is_supported_by_the_auc(tmp_path):
    """COMM reaches the same level 4x sooner: the AUC (deciding) and the steps to threshold
    say supported, final performance stays inconclusive."""
    report = _report(
        tmp_path,
        _same_end_world,
        seeds=range(6),
        envs=["predator_prey"],
        hiddens=[64],
        ramp=_comm_faster,
        budget=400_000,
    )
    claim1 = report["claims"][0]
    (r,) = [r for r in claim1["contrasts"] if r["primary"]]
    auc, final, steps = (r["statistics"][s] for s in STATISTICS)
    assert auc["verdict"] == "supported" and auc["ci_low"] > 0
    # AUC = level - (level - start) * ramp / 2 with start -30: a gap of 40 * (0.6 - 0.15) / 2.
    assert auc["effect"] == pytest.approx(40 * (SLOW - FAST) / 2, abs=1.0)
    assert auc["poi"] > 0.9
    assert final["verdict"] == "inconclusive" and final["ci_low"] < 0 < final["ci_high"]
    assert abs(final["effect"]) < 0.5
    assert final["poi"] == pytest.approx(0.5, abs=0.25)
    assert steps["verdict"] == "supported" and steps["better"] == "lower"
    assert steps["ci_high"] < 0 and steps["poi"] == 1.0  # every COMM seed captures sooner
    assert all(a["reached"] == 6 for a in steps["arms"].values())
    assert claim1["verdict"] == "supported" and claim1["deciding_statistic"] == "listening"
    decided = {"verdict": "supported", "seeds_to_decide": None, "decides_toward": None}
    assert claim1["verdicts_by_statistic"] == {
        "auc": decided,
        "final": {
            "verdict": "inconclusive",
            "seeds_to_decide": final["seeds_to_decide"],
            "decides_toward": final["decides_toward"],
        },
        "threshold_steps": decided,
    }
    md = render_markdown(report)
    assert "| 1 | **supported** | listening test | supported | inconclusive | supported |" in md
    assert "**AUC (normalised area under the evaluation curve)** (decides)" in md


def _escape_world(env, share, comm, hidden, seed):
    """NPS+IQL+COMM: seeds 0-2 capture, seed 3 stays in the avoid basin; NPS+IQL never
    leaves it. Everything else captures."""
    if share == "nps" and hidden == 64:
        return 10.0 if comm and seed < 3 else -4.0
    return 10.0


def test_censored_runs_are_counted_not_dropped(tmp_path):
    make_runs(
        tmp_path,
        level=_escape_world,
        seeds=range(4),
        envs=["predator_prey"],
        hiddens=[64],
        noise=0.05,
    )
    df = aggregate_runs([tmp_path])
    per_run = run_statistics(verdict_grid(df)).query("metric == 'eval_return_mean'")
    never = per_run[~per_run["reached"].astype(bool)]
    assert len(never) == 5  # the four NPS+IQL seeds and NPS+IQL+COMM seed 3
    assert (never["threshold_steps"] == 200_000 + 10_000).all()  # budget + one interval
    assert THRESHOLDS[("predator_prey", "eval_return_mean")][0] == -3.0

    report = replication_report(df, n_boot=2000, seed=0)
    (r,) = [r for r in report["claims"][0]["contrasts"] if r["primary"]]
    steps = r["statistics"]["threshold_steps"]
    a, b = steps["arms"]["A"], steps["arms"]["B"]
    assert (a["n"], a["reached"], b["n"], b["reached"]) == (4, 3, 4, 0)
    assert a["reached_fraction"] == 0.75 and b["reached_fraction"] == 0.0
    assert b["iqm"] == 210_000.0
    # IQM of 4 values = mean of the middle two: the censored seed is trimmed, not dropped.
    reached = sorted(per_run.query("method == 'NPS+IQL+COMM' and reached")["threshold_steps"])
    assert a["iqm"] == pytest.approx((reached[1] + reached[2]) / 2)
    # P(COMM reaches sooner): 3 x 4 sure wins, the censored seed ties the 4 censored ones.
    assert steps["poi"] == pytest.approx((3 * 4 + 0.5 * 4) / 16)
    assert steps["effect"] < 0
    # Basins per seed, per arm and per configuration.
    final = r["statistics"]["final"]
    assert final["arms"]["A"]["basins"] == {"capture": 3, "avoid": 1, "penalised": 0}
    assert final["arms"]["B"]["basins"] == {"capture": 0, "avoid": 4, "penalised": 0}
    configs = {(g["method"], g["hidden"]): g for g in report["configurations"]}
    assert configs[("NPS+IQL", 64)]["basins"] == {"capture": 0, "avoid": 4, "penalised": 0}
    assert configs[("NPS+IQL", 64)]["reached"] == 0
    assert configs[("NPS+IQL+COMM", 64)]["reached"] == 3
    md = render_markdown(report)
    row = next(
        x for x in md.splitlines() if x.startswith("| predator_prey | native | NPS+IQL | 64 | 4 |")
    )
    assert row.endswith("| 0/4 | 210,000 | 0 / 4 / 0 |")


def test_no_run_reaching_the_threshold_says_so(tmp_path):
    report = _report(tmp_path, lambda e, s, c, h, seed: 0.0, envs=["3s_vs_5z"], seeds=(0, 1, 2))
    for r in report["claims"][3]["contrasts"]:
        steps = r["statistics"]["threshold_steps"]
        if r["metric"] == "eval_win_rate":
            assert steps["verdict"] == "inconclusive"
            assert "no run reached the threshold" in steps["note"]
            assert all(a["reached"] == 0 for a in steps["arms"].values())
        else:  # the return has no threshold on 3s_vs_5z
            assert steps["verdict"] == "untested" and "no threshold" in steps["note"]


# ---------------------------------------------------------------- bad input


def test_runs_left_out_are_named_and_never_mixed_in(tmp_path):
    make_runs(tmp_path, level=paper_world, seeds=(0, 1, 2), envs=["predator_prey"], hiddens=[64])
    clean = replication_report(aggregate_runs([tmp_path]), n_boot=1000, seed=0)
    arm = tmp_path / "predator_prey" / "nps_iql_comm_h64"
    common = dict(env="predator_prey", share="nps", comm=True, hidden=64, level=100.0)
    half = write_run_dir(arm / "seed7", seed=7, **common)  # half-written: 12 of 20 evaluations
    pd.read_csv(half / "metrics.csv").head(12).to_csv(half / "metrics.csv", index=False)
    other = write_run_dir(arm / "seed8", seed=8, budget=100_000, **common)  # disagreeing budget
    evals = write_run_dir(arm / "seed9", seed=9, eval_interval=5_000, **common)
    unfinished = write_run_dir(arm / "seed10", seed=10, **common)
    info = json.loads((unfinished / "run_info.json").read_text())
    (unfinished / "run_info.json").write_text(json.dumps({**info, "finished": False}))

    df = aggregate_runs([tmp_path])
    report = replication_report(df, n_boot=1000, seed=0)
    left = {r["run_dir"]: r["reason"] for r in report["runs_left_out"]}
    assert set(left) == {str(half), str(other), str(evals), str(unfinished)}
    assert left[str(half)].startswith("half-written: metrics.csv ends at env step")
    assert "12 of 20 evaluations" in left[str(half)]
    assert left[str(other)] == "config differs from the rest of its env and backend: budget=100000"
    assert "eval_interval=5000" in left[str(evals)]
    assert left[str(unfinished)] == "half-written: run_info.json says finished: false"
    # The verdicts see exactly the clean runs: same arms, same numbers.
    for got, want in zip(report["claims"], clean["claims"], strict=True):
        assert got["verdict"] == want["verdict"]
        for g, w in zip(got["contrasts"], want["contrasts"], strict=True):
            for stat in STATISTICS:
                assert g["statistics"][stat]["effect"] == w["statistics"][stat]["effect"]
                assert g["statistics"][stat]["arms"] == w["statistics"][stat]["arms"]
    md = render_markdown(report)
    assert "## Runs left out" in md and "4 run(s) enter no verdict" in md
    assert f"| `{half}` | predator_prey | native | NPS+IQL+COMM H64 | 7 | half-written" in md
    assert "None: every run" in render_markdown(clean)
    write_report(report, tmp_path / "pf")
    data = json.loads((tmp_path / "pf" / "replication.json").read_text())
    assert len(data["runs_left_out"]) == 4


SCALE_ENVS = ("predator_prey", "predator_prey_8", "predator_prey_16")


def scale_world(env, share, comm, hidden, seed):
    """Team returns per agent as the 4-agent world, times the team size: NPS+COMM gains 4 per
    4 agents at every team size (the same gain per agent)."""
    per_agent = {"predator_prey": 1, "predator_prey_8": 2, "predator_prey_16": 4}[env]
    gain = 4.0 if comm else 0.0
    return ((10.0 if share == "ps" else 5.0) + gain + 0.3 * (seed - 2)) * per_agent


def test_team_size_claim_is_beyond_the_paper_and_leaves_its_verdicts_alone(tmp_path):
    make_runs(
        tmp_path / "pp", envs=("predator_prey",), hiddens=(64,), seeds=range(5), level=scale_world
    )
    make_runs(
        tmp_path / "big", envs=SCALE_ENVS[1:], hiddens=(64,), seeds=range(5), level=scale_world
    )
    alone = replication_report(aggregate_runs([tmp_path / "pp"]), n_boot=2000, seed=0)
    both = replication_report(aggregate_runs([tmp_path]), n_boot=2000, seed=0)
    assert [c["id"] for c in both["claims"]] == [1, 2, 3, 4, 5]
    # the larger teams change none of the paper's claims (NaN-safe comparison)
    assert json.dumps(both["claims"], sort_keys=True) == json.dumps(alone["claims"], sort_keys=True)
    claim = next(c for c in alone["beyond_paper"] if c["id"] == 6)
    assert claim["beyond_paper"] and claim["verdict"] == "untested"
    four = next(r for r in claim["contrasts"] if r["env"] == "predator_prey")
    assert four["verdict"] == "supported"  # tested, but one team size decides nothing

    claim = next(c for c in both["beyond_paper"] if c["id"] == 6)
    assert claim["verdict"] == "supported"
    gains = {r["env"]: r for r in claim["contrasts"] if r["primary"]}
    assert set(gains) == set(SCALE_ENVS)
    for env, size in zip(SCALE_ENVS, (4, 8, 16), strict=True):
        final = gains[env]["statistics"]["final"]
        assert final["effect"] == pytest.approx(4.0 * size / 4, abs=0.3 * size / 4)
    (inter,) = [r for r in claim["contrasts"] if not r["primary"]]
    assert set(inter["arms"]) == {"a1", "a0", "b1", "b0"}
    assert "predator_prey_16 NPS+IQL+COMM H64" in inter["arms"]["a1"]["config"]
    # Per agent the gain is the same at 16 as at 4 (in team returns it would be 4x larger).
    final = inter["statistics"]["final"]
    arms = final["arms"]
    by_hand = (arms["a1"]["iqm"] - arms["a0"]["iqm"]) - (arms["b1"]["iqm"] - arms["b0"]["iqm"])
    assert final["effect"] == pytest.approx(by_hand) and abs(final["effect"]) < 0.2
    assert arms["a1"]["iqm"] == pytest.approx(9.0 / 4, abs=0.1)  # (5 + 4) x 4 team / 16
    assert inter["verdict"] != "supported"
    text = render_markdown(both)
    assert "## Beyond the paper" in text and "## Claim 6 (beyond the paper): supported" in text
    assert "not a claim of the paper" in text
    pp16 = [t for t in both["definitions"]["thresholds"] if t["env"] == "predator_prey_16"]
    assert pp16 and pp16[0]["value"] == -12.0  # -16 + 0.25 x 16
    assert "predator_prey_16: within 4 of -16" in both["definitions"]["basins"]
    assert not any(t["env"] == "predator_prey_16" for t in alone["definitions"]["thresholds"])


def test_basins_and_thresholds_follow_the_team_size(tmp_path):
    make_runs(tmp_path, envs=("predator_prey_16",), hiddens=(64,), seeds=(0, 1, 2))
    per_run = run_statistics(verdict_grid(aggregate_runs([tmp_path])), last_k=5)
    assert set(per_run["threshold"]) == {-12.0}
    # default_level: a third of the seeds sit at -16 (the avoid level of 16 agents)
    avoid = per_run[per_run["basin"] == "avoid"]
    assert len(avoid) and ((avoid["final"] + 16).abs() < 4).all()
    assert set(per_run["basin"]) <= {"avoid", "capture"}


def _level(env, share, comm, hidden, seed):
    return (12.0 if share == "ps" else 6.0) + (4.0 if comm else 0.0) + 0.3 * (seed - 2)


def test_attention_claim_compares_the_channels_under_nps_and_ps(tmp_path):
    """Claim 7 (beyond the paper): ATT - COMM under NPS and PS; untested without ATT runs,
    decided (here supported: ATT is 3 above COMM for both) with them; the paper's claims and
    its four-method verdicts are untouched by the ATT runs."""
    make_runs(
        tmp_path / "paper", envs=("predator_prey",), hiddens=(64,), seeds=range(5), level=_level
    )
    without = replication_report(aggregate_runs([tmp_path / "paper"]), n_boot=2000, seed=0)
    assert next(c for c in without["beyond_paper"] if c["id"] == 7)["verdict"] == "untested"
    for share in ("ps", "nps"):
        for seed in range(5):
            d = write_run_dir(
                tmp_path / "att" / f"{share}_att" / f"seed{seed}",
                env="predator_prey",
                share=share,
                comm=True,
                hidden=64,
                seed=seed,
                level=_level("predator_prey", share, True, 64, seed) + 3.0,
                extra_config={"channel": "attention"},
            )
            info = json.loads((d / "run_info.json").read_text())
            info["method"] = f"{share.upper()}+IQL+ATT"
            (d / "run_info.json").write_text(json.dumps(info))
    both = replication_report(aggregate_runs([tmp_path]), n_boot=2000, seed=0)
    assert json.dumps(both["claims"], sort_keys=True) == json.dumps(
        without["claims"], sort_keys=True
    )
    claim = next(c for c in both["beyond_paper"] if c["id"] == 7)
    assert claim["verdict"] == "supported"
    primary = {r["label"]: r for r in claim["contrasts"] if r["primary"]}
    assert sorted(primary) == [
        "predator_prey H64: NPS+IQL+ATT - NPS+IQL+COMM",
        "predator_prey H64: PS+IQL+ATT - PS+IQL+COMM",
    ]
    for r in primary.values():
        assert r["statistics"]["final"]["effect"] == pytest.approx(3.0, abs=0.6)
    assert "## Claim 7 (beyond the paper): supported" in render_markdown(both)


# ---------------------------------------------------------------- seed-free verdicts

SHIPPED = ("replication", "beyond/attention", "beyond/scale")
ROOT = Path(__file__).resolve().parents[2]


def _decisions(report) -> list:
    """Every verdict, CI and seeds-to-decide of a report, claims and contrasts."""
    out = []
    for c in report["claims"] + report["beyond_paper"]:
        out.append((c["id"], c["verdict"], c["seeds_to_decide"], c["decides_toward"]))
        for r in c["contrasts"]:
            for stat, s in r["statistics"].items():
                keys = ("verdict", "ci_low", "ci_high", "poi_ci_low", "poi_ci_high")
                out.append((r["label"], r["backend"], stat, *(s[k] for k in keys)))
    return out


@pytest.mark.parametrize("study", SHIPPED)
def test_shipped_verdicts_do_not_depend_on_the_bootstrap_seed(study):
    df = load_runs(ROOT / study / "all_runs.csv")
    first = replication_report(df, seed=0)
    for s in first["claims"] + first["beyond_paper"]:
        for r in s["contrasts"]:
            for stat in r["statistics"].values():
                assert stat["ci_method"] in ("exact", None)  # arms of 3 to 5 seeds: enumerated
    want = json.dumps(_decisions(first))
    for seed in range(1, 20):
        assert json.dumps(_decisions(replication_report(df, seed=seed))) == want, seed


def test_a_rounding_error_does_not_reach_the_threshold(tmp_path):
    """-2.999999999999998 is -3.0 (one capture in 20 episodes) summed in floating point: it
    stays at the threshold and in the avoid basin; the smallest real step above crosses."""
    levels = {("nps", True): -2.999999999999998, ("nps", False): -2.9995}

    def level(env, share, comm, hidden, seed):
        return levels.get((share, comm), 10.0)

    make_runs(tmp_path, level=level, envs=["predator_prey"], hiddens=[64], noise=0.0)
    per_run = run_statistics(verdict_grid(aggregate_runs([tmp_path])))
    nps = per_run[per_run["method"].str.startswith("NPS")].set_index("method")
    assert not nps.loc["NPS+IQL+COMM", "reached"].any()
    assert set(nps.loc["NPS+IQL+COMM", "basin"]) == {"avoid"}
    assert nps.loc["NPS+IQL", "reached"].all() and set(nps.loc["NPS+IQL", "basin"]) == {"capture"}


def _against_world(env, share, comm, hidden, seed):
    """PredatorPrey only: COMM's gain grows with H (against claim 5), amid seed noise."""
    noise = 3.0 * math.sin(7 * seed + hidden + (share == "ps"))
    return (10.0 if share == "ps" else 5.0) + (2.0 + hidden / 32 if comm else 0.0) + noise


def test_direction_and_outlook_are_stated(tmp_path):
    report = _report(tmp_path, _against_world, envs=["predator_prey"])
    claims = {c["id"]: c for c in report["claims"]}
    c5 = claims[5]
    assert c5["verdict"] == "inconclusive" and c5["decides_toward"] == "contradicted"
    primary = [r for r in c5["contrasts"] if r["primary"]]
    against = [r for r in primary if r["decides_toward"] == "contradicted"]
    assert against and all(r["effect"] < 0 for r in against)
    assert all("points against the claim" in r["note"] for r in against)
    assert c5["seeds_to_decide"] == min(r["seeds_to_decide"] for r in against)
    assert not c5["can_become_supported"] and "against the claim: it becomes" in c5["outlook"]
    # Claim 2 without 3s_vs_5z runs: it says which contrasts are untested and that it cannot
    # become supported while they are.
    c2 = claims[2]
    assert c2["untested_contrasts"] == [
        "3s_vs_5z H64: PS+IQL - NPS+IQL",
        "3s_vs_5z H64: PS+IQL+COMM - NPS+IQL+COMM",
    ]
    assert not c2["can_become_supported"]
    assert c2["outlook"].startswith("It cannot become supported while 3s_vs_5z H64")
    md = render_markdown(report)
    assert f"| {c5['seeds_to_decide']} against the claim | - | no |" in md
    assert "| 2 | **" in md and f"Outlook: {c2['outlook']}" in md


def _fake_monte_carlo(monkeypatch, **bounds):
    """Make every contrast's CI a Monte-Carlo one with the given bounds and errors."""
    real = stats.bootstrap_contrast

    def fake(*args, **kwargs):
        res = real(*args, **kwargs)
        return {**res, "method": "monte-carlo", "resamples": 320_000, **bounds}

    monkeypatch.setattr(stats, "bootstrap_contrast", fake)


@pytest.mark.parametrize(
    ("bounds", "verdict"),
    [
        # 3 Monte-Carlo errors of 0.005 reach past 0: the seed could decide either way.
        (
            {"ci_low": 0.01, "ci_high": 5.0, "mc_error_low": 0.005, "mc_error_high": 0.1},
            "borderline",
        ),
        (
            {"ci_low": 0.02, "ci_high": 5.0, "mc_error_low": 0.005, "mc_error_high": 0.1},
            "supported",
        ),
        (
            {"ci_low": -5.0, "ci_high": -0.01, "mc_error_low": 0.1, "mc_error_high": 0.005},
            "borderline",
        ),
        (
            {"ci_low": -5.0, "ci_high": -0.02, "mc_error_low": 0.1, "mc_error_high": 0.005},
            "contradicted",
        ),
        # Exact bounds: one within float rounding of 0 sits on it, and decides nothing.
        (
            {"ci_low": 1e-12, "ci_high": 5.0, "mc_error_low": 0.0, "mc_error_high": 0.0},
            "inconclusive",
        ),
    ],
)
def test_a_bound_within_its_monte_carlo_error_is_borderline(tmp_path, monkeypatch, bounds, verdict):
    _fake_monte_carlo(monkeypatch, **bounds)
    report = _report(tmp_path, paper_world, seeds=(0, 1, 2), envs=["predator_prey"], hiddens=[64])
    claim1 = report["claims"][0]
    (r,) = [r for r in claim1["contrasts"] if r["primary"]]
    # claim 1 is decided by its listening test; its AUC verdict combines the contrasts
    assert r["verdict"] == verdict and claim1["verdicts_by_statistic"]["auc"]["verdict"] == verdict
    if verdict == "borderline":
        side = "supported" if bounds["ci_low"] > 0 else "contradicted"
        assert r["borderline_between"] == side
        assert f"{side} or inconclusive depending on the bootstrap's seed" in r["note"]
        assert "Monte-Carlo +-0.1 (320,000 resamples)" in render_markdown(report)
