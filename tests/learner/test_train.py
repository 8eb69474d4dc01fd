"""`ficomm train` end to end on PredatorPrey: the run directory contract, the evaluation
schedule, determinism, resume after SIGTERM and SIGKILL, and failures that must be loud."""

from __future__ import annotations

import json
import signal
import time

import pytest
import torch
import yaml
from learner_helpers import SMALL_RUN, read_metrics, run_train, signal_when

from ficomm.tracking import COLUMNS

BUDGET = ["budget=4000", "eval_interval=500"]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted run that the resume tests compare against."""
    out = tmp_path_factory.mktemp("ref") / "run"
    res = run_train([*SMALL_RUN, *BUDGET, "share=nps", "comm=true", f"out={out}"])
    assert res.returncode == 0, res.stderr
    return out


def test_run_directory_contract(reference_run):
    out = reference_run
    assert {p.name for p in out.iterdir()} >= {
        "config.yaml",
        "run_info.json",
        "metrics.csv",
        "checkpoint",
    }
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["share"] == "nps" and cfg["comm"] is True and cfg["hidden"] == 16
    assert cfg["budget"] == 4000 and cfg["lr"] == 5e-4 and cfg["out"] == str(out)
    info = json.loads((out / "run_info.json").read_text())
    assert info["method"] == "NPS+IQL+COMM"
    assert info["n_params"] == sum(p.numel() for p in _nets(16).parameters()) // 4
    assert isinstance(info["n_params"], int) and info["n_owners"] == 4
    assert info["q_input_width"] == 73
    assert (info["n_agents"], info["n_actions"], info["obs_size"]) == (4, 5, 28)
    assert info["backend"] == "native" and info["device"] == "cpu"
    assert len(info["wandb_run_id"]) == 16
    rows = read_metrics(out / "metrics.csv", drop_wall_clock=False)
    assert list(rows[0])[: len(COLUMNS)] == COLUMNS
    assert "eval_captures_mean" in rows[0]
    assert all(r["backend"] == "native" for r in rows)
    steps = [int(r["env_steps"]) for r in rows]
    # first at step 0; then once per crossed multiple of 500; then the final policy's at the
    # budget (the episode that crossed it ends at or after it)
    assert steps[0] == 0 and rows[0]["train_loss"] == "" and rows[0]["grad_steps"] == "0"
    assert [s // 500 for s in steps[:-1]] == list(range(len(steps) - 1))
    assert steps[-2] < 4000 <= steps[-1] and len(steps) == 9
    for r in rows[1:]:
        assert int(r["grad_steps"]) == int(r["episodes"])  # 1 episode : 1 gradient step
        assert float(r["train_loss"]) > 0
        assert r["eval_win_rate"] == ""  # PredatorPrey has no win signal
        assert float(r["env_steps_per_sec"]) > 0
        # epsilon: minus 0.95/2000 per training env step, from 1.0
        assert float(r["epsilon"]) == pytest.approx(
            max(1 - 0.95 / 2000 * int(r["env_steps"]), 0.05), abs=5e-4
        )
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=True)
    assert state["finished"] and state["buffer"] is None  # the final checkpoint drops the replay


def _nets(hidden):
    from ficomm.methods import layout_for
    from ficomm.nets import AgentNets

    return AgentNets(layout_for("nps", True), 4, 28, 5, hidden)


def test_finished_run_rerun_exits_quickly_and_restores_deleted_csv(reference_run):
    before = (reference_run / "metrics.csv").read_text()
    (reference_run / "metrics.csv").unlink()
    t = time.perf_counter()
    res = run_train([*SMALL_RUN, *BUDGET, "share=nps", "comm=true", f"out={reference_run}"])
    assert res.returncode == 0, res.stderr
    assert "already finished" in res.stderr
    assert time.perf_counter() - t < 30
    assert (reference_run / "metrics.csv").read_text() == before


def test_same_seed_gives_identical_metrics(reference_run, tmp_path):
    res = run_train([*SMALL_RUN, *BUDGET, "share=nps", "comm=true", f"out={tmp_path / 'again'}"])
    assert res.returncode == 0, res.stderr
    assert read_metrics(tmp_path / "again" / "metrics.csv") == read_metrics(
        reference_run / "metrics.csv"
    )
    res = run_train(
        [*SMALL_RUN, "budget=1000", "eval_interval=500", "seed=1", f"out={tmp_path / 's1'}"]
    )
    assert res.returncode == 0, res.stderr
    other = read_metrics(tmp_path / "s1" / "metrics.csv")
    assert other[1] != read_metrics(reference_run / "metrics.csv")[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_resumes_to_the_same_metrics(reference_run, tmp_path, sig):
    out = tmp_path / "run"
    args = [*SMALL_RUN, *BUDGET, "share=nps", "comm=true", f"out={out}"]
    csv = out / "metrics.csv"
    code, err = signal_when(args, csv, 4, sig)  # header + 3 evaluations
    if sig == signal.SIGTERM:
        assert code == 143, err
        assert "received SIGTERM" in err and "rerun the same command to resume" in err
    else:
        assert code == -signal.SIGKILL
    assert len(read_metrics(csv)) < 8  # it really stopped early
    res = run_train(args)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    assert read_metrics(csv) == read_metrics(reference_run / "metrics.csv")


def test_other_config_in_the_same_directory_is_refused(reference_run):
    res = run_train(
        [*SMALL_RUN, *BUDGET, "share=nps", "comm=true", "lr=0.001", f"out={reference_run}"]
    )
    assert res.returncode == 2
    assert "out:" in res.stderr and "lr" in res.stderr and "different configuration" in res.stderr


def test_corrupt_checkpoint_is_reported(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "state.pt").write_bytes(b"not a checkpoint")
    res = run_train([*SMALL_RUN, "budget=1000", "eval_interval=500", f"out={out}"])
    assert res.returncode == 1
    assert "state.pt" in res.stderr and "damaged" in res.stderr
    assert f"delete the folder {out / 'checkpoint'}" in res.stderr


def test_nan_loss_stops_the_run_and_keeps_the_checkpoint_before_it(tmp_path):
    out = tmp_path / "run"
    res = run_train([*SMALL_RUN, "budget=2000", "eval_interval=500", "lr=1e30", f"out={out}"])
    assert res.returncode == 1, res.stderr
    assert "training loss became nan" in res.stderr.lower()
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=True)
    assert not state["finished"]
    assert all(torch.isfinite(v).all() for v in state["learner"]["nets"].values())
    rows = read_metrics(out / "metrics.csv")
    assert int(rows[-1]["env_steps"]) == state["counters"]["env_steps"]


def test_bad_input_fails_before_training(tmp_path):
    out = tmp_path / "run"
    res = run_train(["hiden=32", f"out={out}"])
    assert res.returncode == 2 and "hiden" in res.stderr and "hidden" in res.stderr
    assert not out.exists()
    res = run_train([*SMALL_RUN, "budget=1000", "eval_interval=500", "device=cuda", f"out={out}"])
    if not torch.cuda.is_available():
        assert res.returncode == 2 and "device:" in res.stderr and "cuda" in res.stderr
        assert not (out / "metrics.csv").exists()


def test_console_script_dispatches_to_train(capsys):
    from ficomm.cli import main

    assert main(["train", "--help"]) == 0
    assert "ficomm train" in capsys.readouterr().out
