"""The workflow refuses bad input while the Snakefile is parsed, before any job starts: training
keys `ficomm train` would reject, and a change of learning keys that would retrain (and first
delete the results of) runs already on disk. Keys that do not change learning rerun nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from workflow_utils import copy_workflow, job_counts, snakemake, write_overlay

from ficomm.config import config_to_yaml, make_config

RUN = "results/smoke/runs/predator_prey/native/nps_comm/h32/seed0"
TARGET = f"{RUN}/metrics.csv"
# One PredatorPrey run of 200 env steps: the smallest grid the smoke preset allows.
TINY = {
    "grid": {"env": ["predator_prey"], "share": ["nps"], "comm": [True], "hidden": [32]},
    "budget": {"predator_prey": 200},
    "eval_interval": 100,
    "eval_episodes": 2,
}


def tiny_overlay(**preset) -> dict:
    return {
        "presets": {"smoke": {**TINY, "grid": {**TINY["grid"], "seeds": [0]}, **preset}},
        "wandb_mode": "disabled",
    }


def config_line(output: str, prefix: str) -> str:
    """The one line of Snakemake's output that starts with `prefix`."""
    lines = [line for line in output.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, output[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    ("preset", "field", "reason"),
    [
        (
            {"train": {"lrr": 0.001}},
            "presets.smoke.train.lrr",
            "unknown config key; did you mean 'lr'?",
        ),
        ({"train": {"lr": -1}}, "presets.smoke.train.lr", "must be positive, got -1.0"),
        (
            {"overrides": [{"where": {"hidden": 32}, "set": {"msg_hidden": 0}}]},
            "presets.smoke.overrides[0].set.msg_hidden",
            "must be a positive integer, got 0",
        ),
        ({"budget": {"predator_prey": 50}}, "presets.smoke.budget.predator_prey", "below eval"),
    ],
)
def test_bad_training_key_stops_the_workflow_before_any_job(tmp_path, preset, field, reason):
    """`ficomm train`'s own validation runs on every grid point while the Snakefile is parsed:
    a dry run and a real run both fail with one line naming the field, and no job starts."""
    workdir = copy_workflow(tmp_path, tiny_overlay(**preset))
    for extra in (("-n",), ()):
        res = snakemake(workdir, *extra, "--cores", "1", "--configfile", "overlay.yaml")
        assert res.returncode != 0, res.stdout[-3000:]
        line = config_line(res.stdout, f"config: {field}: ")
        assert reason in line, line
        assert "rule train" not in res.stdout, res.stdout[-3000:]
    assert not (workdir / "results").exists(), "no job may start (no run dir, no log)"


def write_finished_run(workdir: Path, **keys) -> Path:
    """A run directory as a finished `ficomm train` leaves it (config.yaml, run_info.json,
    metrics.csv, checkpoint/), for the tiny grid's only run, trained with `keys`."""
    run_dir = workdir / RUN
    values = dict(env="predator_prey", share="nps", comm=True, hidden=32, seed=0, budget=200)
    values.update(eval_interval=100, eval_episodes=2, out=RUN, **keys)
    (run_dir / "checkpoint").mkdir(parents=True)
    (run_dir / "checkpoint/state.pt").write_bytes(b"stand-in")
    (run_dir / "config.yaml").write_text(config_to_yaml(make_config(values)))
    (run_dir / "run_info.json").write_text("{}\n")
    (run_dir / "metrics.csv").write_text("env_steps,return\n0,-4.0\n")
    return run_dir


def test_runs_on_disk_with_other_learning_keys_are_refused(tmp_path):
    """A run on disk (finished, or interrupted: its checkpoint) whose learning keys differ from
    the preset's is refused, naming the key, the run and the ways out; one that differs only in
    how it ran (threads, kernel, W&B) is not."""
    workdir = copy_workflow(tmp_path, tiny_overlay())
    write_finished_run(workdir, threads=4, kernel="torch", wandb_mode="offline")
    same = snakemake(workdir, "-n", TARGET, "--cores", "1", "--configfile", "overlay.yaml")
    assert same.returncode == 0, same.stdout[-3000:]
    assert "Nothing to be done" in same.stdout, same.stdout[-3000:]

    write_overlay(workdir, tiny_overlay(eval_episodes=3, train={"lr": 0.001}))
    res = snakemake(workdir, "-n", "--cores", "1", "--configfile", "overlay.yaml")
    assert res.returncode != 0
    line = config_line(res.stdout, "1 run(s) on disk were trained with other learning keys")
    assert "eval_episodes (2 on disk, 3 now)" in line and "lr (0.0005 on disk, 0.001 now)" in line
    assert RUN in line and "delete those run directories" in line
    assert "presets.smoke.out" in line

    # A run whose failed job lost metrics.csv and run_info.json still holds its checkpoint.
    run_dir = workdir / RUN
    (run_dir / "metrics.csv").unlink()
    (run_dir / "run_info.json").unlink()
    res = snakemake(workdir, "-n", "--cores", "1", "--configfile", "overlay.yaml")
    assert res.returncode != 0 and "eval_episodes (2 on disk, 3 now)" in res.stdout
    (run_dir / "config.yaml").write_text("[unbalanced\n")
    res = snakemake(workdir, "-n", "--cores", "1", "--configfile", "overlay.yaml")
    assert res.returncode != 0
    assert "1 run(s) on disk" in res.stdout and "config.yaml (unreadable)" in res.stdout


@pytest.mark.slow
def test_finished_grid_is_kept_when_a_learning_key_changes(tmp_path):
    """Finish a one-run grid; asking for another eval_episodes is refused (dry run and real run)
    before anything is deleted; changing threads, the kernel, W&B or the device reruns
    nothing."""
    workdir = copy_workflow(tmp_path, tiny_overlay())
    # (--set-resources and --configfile take several values: the target goes first)
    args = ("--cores", "1", "--configfile", "overlay.yaml")
    done = snakemake(workdir, TARGET, *args, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]
    run_dir = workdir / RUN
    files = [p for p in sorted(run_dir.rglob("*")) if p.is_file()]
    assert {"metrics.csv", "run_info.json", "config.yaml", "state.pt"} <= {p.name for p in files}
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    # Snakemake recorded the job's params: without the guard, its params trigger would rerun it.
    assert any((workdir / ".snakemake/metadata").iterdir())

    write_overlay(workdir, tiny_overlay(eval_episodes=3))
    for extra in (("-n",), ()):
        res = snakemake(workdir, TARGET, *extra, *args)
        assert res.returncode != 0, res.stdout[-3000:]
        assert "eval_episodes (2 on disk, 3 now)" in res.stdout, res.stdout[-3000:]
        assert "rule train" not in res.stdout
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before

    overlay = tiny_overlay(train={"kernel": "torch"})
    overlay.update(wandb_mode="offline", wandb_project="elsewhere")
    write_overlay(workdir, overlay)
    for extra in (("-n", "--set-resources", "train:gpu=1"), ("--set-threads", "train=2")):
        res = snakemake(workdir, TARGET, *extra, *args)
        assert res.returncode == 0, res.stdout[-3000:]
        assert "Nothing to be done" in res.stdout and not job_counts(res.stdout), res.stdout
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
