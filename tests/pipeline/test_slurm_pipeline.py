"""The workflow on a real (single-node) SLURM cluster through `--profile workflow/profiles/slurm`.

The sub-grid is the eight PredatorPrey runs of the smoke grid at H 64 (PS/NPS x COMM/none x
2 seeds) with a tiny budget, and their aggregated table. Checks: every training job ran as a
SLURM job and completed (sacct), the outputs and the aggregated table (parameter counts from
run_info.json included), a rerun after deleting one run's output submits exactly that one job,
and a failing job makes Snakemake exit non-zero.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from itertools import product
from pathlib import Path

import pytest
import yaml
from workflow_utils import (
    copy_workflow,
    job_counts,
    kill_group,
    snakemake,
    start_snakemake,
    wait_for,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

OVERLAY = {
    "presets": {
        "smoke": {
            "grid": {"env": ["predator_prey"], "hidden": [64]},
            "budget": {"predator_prey": 300},
            "eval_interval": 100,
            "eval_episodes": 1,
        }
    },
    "wandb_mode": "disabled",
}
RUNS = [
    f"results/smoke/runs/predator_prey/native/{share}_{comm}/h64/seed{seed}"
    for share, comm, seed in product(("ps", "nps"), ("comm", "nocomm"), (0, 1))
]
TARGETS = [f"{run}/metrics.csv" for run in RUNS]
PROFILE = (
    "--profile",
    "workflow/profiles/slurm",
    # Defaults suit a busy cluster; a private one answers at once.
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--seconds-between-status-checks",
    "2",
    "--latency-wait",
    "5",
    # Keeps each job's SLURM log, whose path names the job's rule and wildcards.
    "--slurm-keep-successful-logs",
)
PARAMS_H64 = {"NPS+IQL": 27_461, "NPS+IQL+COMM": 36_687, "PS+IQL": 27_717, "PS+IQL+COMM": 36_303}


def run_profile(workdir: Path, *args: str, overlay: str = "overlay.yaml", timeout: float = 240):
    # Targets before --configfile, which takes several values.
    return snakemake(workdir, *args, *PROFILE, "--configfile", overlay, timeout=timeout)


def slurm_run_id(output: str) -> str:
    m = re.search(r"SLURM run ID: (\S+)", output)
    assert m, output[-3000:]
    return m[1]


def sacct_jobs(cluster, run_id: str) -> list[dict[str, str]]:
    """The allocations a Snakemake invocation submitted (its SLURM jobs are named by its run id)."""
    out = cluster.run(
        "sacct", "-X", "-n", "-P", "--name", run_id, "--starttime", "now-1days",
        "--format=JobIDRaw,State,ExitCode,Partition",
    ).stdout  # fmt: skip
    return [
        dict(zip(("id", "state", "exit", "partition"), line.split("|"), strict=True))
        for line in out.splitlines()
        if line.strip()
    ]


def logged_runs(workdir: Path, job_ids: list[str]) -> list[str]:
    """Which run each job trained, from the path of its kept SLURM log
    (.snakemake/slurm_logs/rule_train/<wildcard values joined by _>/<job id>.log)."""
    found = []
    for job in job_ids:
        logs = list((workdir / ".snakemake/slurm_logs").rglob(f"{job}.log"))
        assert len(logs) == 1, (job, logs)
        assert logs[0].parent.parent.name == "rule_train", logs[0]
        found.append(logs[0].parent.name)
    return found


def log_name(run: str) -> str:
    """results/.../runs/predator_prey/native/ps_comm/h64/seed0 -> predator_prey_native_ps_comm_64_0"""
    env, backend, share_comm, hidden, seed = run.split("/")[-5:]
    return "_".join((env, backend, share_comm, hidden.removeprefix("h"), seed.removeprefix("seed")))


@pytest.fixture(scope="module")
def pipeline(slurm_cluster, tmp_path_factory):
    """The eight runs through SLURM, once for the module: (workdir, snakemake output)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm_workflow"), OVERLAY)
    res = run_profile(workdir, *TARGETS, "results/smoke/all_runs.csv", timeout=420)
    assert res.returncode == 0, res.stdout[-6000:]
    return workdir, res.stdout


def test_every_training_job_ran_under_slurm_and_completed(slurm_cluster, pipeline):
    workdir, output = pipeline
    jobs = sacct_jobs(slurm_cluster, slurm_run_id(output))
    # Eight training jobs; aggregate is a local rule.
    assert len(jobs) == len(RUNS), jobs
    assert all(j["state"] == "COMPLETED" and j["exit"] == "0:0" for j in jobs), jobs
    assert {j["partition"] for j in jobs} == {slurm_cluster.partition}
    assert sorted(logged_runs(workdir, [j["id"] for j in jobs])) == sorted(map(log_name, RUNS))
    for run in RUNS:
        rows = list(csv.DictReader((workdir / run / "metrics.csv").open()))
        assert [int(r["env_steps"]) for r in rows][:1] == [0] and len(rows) >= 3, run
    table = list(csv.DictReader((workdir / "results/smoke/all_runs.csv").open()))
    assert len({r["run_dir"] for r in table}) == len(RUNS)
    # run_info.json's parameter counts reach the aggregated table (H 64; docs/faithfulness.md).
    assert {(r["method"], int(r["n_params"])) for r in table} == set(PARAMS_H64.items())


def test_rerun_after_deleting_one_output_reruns_only_that_job(slurm_cluster, pipeline):
    workdir, _ = pipeline
    victim = RUNS[3]
    before = (workdir / victim / "metrics.csv").read_text()
    (workdir / victim / "metrics.csv").unlink()
    dry = run_profile(workdir, *TARGETS, "-n")
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert job_counts(dry.stdout) == {"train": 1}, dry.stdout[-3000:]
    assert f"{victim}/metrics.csv" in dry.stdout

    res = run_profile(workdir, *TARGETS)
    assert res.returncode == 0, res.stdout[-4000:]
    jobs = sacct_jobs(slurm_cluster, slurm_run_id(res.stdout))
    assert [j["state"] for j in jobs] == ["COMPLETED"], jobs
    assert logged_runs(workdir, [jobs[0]["id"]]) == [log_name(victim)]
    # The finished run was not trained again: its checkpoint rewrote the same metrics
    # (wall-clock columns included).
    assert (workdir / victim / "metrics.csv").read_text() == before
    again = run_profile(workdir, *TARGETS, "-n")
    assert "Nothing to be done" in again.stdout, again.stdout[-3000:]


def test_failing_job_makes_snakemake_fail(slurm_cluster, pipeline):
    workdir, _ = pipeline
    bad = RUNS[0]
    # A value the workflow cannot check before the run starts (the environment checks its own
    # settings), on a grid point with no finished run: a changed finished run is refused
    # before any job starts instead (tests/pipeline/test_workflow_guards.py).
    shutil.rmtree(workdir / bad)
    overlay = {
        "presets": {
            "smoke": {
                "overrides": [
                    {
                        "where": {"env": "predator_prey", "share": "ps", "comm": True, "seed": 0},
                        "set": {"env_args": {"no_such_param": 1}},  # the env rejects it
                    }
                ]
            }
        }
    }
    (workdir / "bad.yaml").write_text(yaml.safe_dump(overlay))
    res = snakemake(
        workdir, *TARGETS, *PROFILE, "--retries", "0", "--configfile", "overlay.yaml", "bad.yaml"
    )
    assert res.returncode != 0, res.stdout[-4000:]
    jobs = sacct_jobs(slurm_cluster, slurm_run_id(res.stdout))
    # Only that grid point ran, under SLURM, and failed.
    assert [j["state"] for j in jobs] == ["FAILED"], jobs
    assert not (workdir / bad / "metrics.csv").exists()
    log = workdir / "results/smoke/logs/train/predator_prey/native/ps_comm/h64/seed0.log"
    assert "no_such_param" in log.read_text()


@pytest.mark.parametrize("pack", [1, 2], ids=["one-run", "pack-of-2"])
def test_timed_out_job_is_retried_and_resumes_from_its_checkpoint(slurm_cluster, tmp_path, pack):
    """SLURM kills a training job at its time limit (state TIMEOUT, as on a cluster when a run
    outlasts its request); Snakemake's retry submits a new job, which resumes from the run's
    checkpoint instead of starting again, and finishes. With pack 2 the job trains seeds 0
    and 1 in one process, and the retry resumes both.

    The first job is frozen (SIGSTOP) once it has checkpointed, before its time limit is cut:
    slurmctld enforces limits on its own schedule, and a job left running could finish first on
    a fast machine. Frozen, it can only end by SLURM's time-out, whatever the machine's speed."""
    prefix = "results/smoke/runs/predator_prey/native/nps_comm/h32/seed"
    runs = [f"{prefix}{seed}" for seed in range(pack)]
    overlay = {
        "presets": {
            "smoke": {
                "grid": {"env": ["predator_prey"], "hidden": [32], "seeds": list(range(pack))},
                "budget": {"predator_prey": 30_000},
                "eval_interval": 500,
                "eval_episodes": 1,
                "pack": pack,
            }
        },
        "wandb_mode": "disabled",
    }
    workdir = copy_workflow(tmp_path, overlay)
    metrics = [workdir / run / "metrics.csv" for run in runs]
    targets = [f"{run}/metrics.csv" for run in runs]
    args = (*targets, *PROFILE, "--retries", "1", "--configfile", "overlay.yaml")
    proc = start_snakemake(workdir, *args)
    try:
        wait_for(
            lambda: all(m.exists() and len(m.read_text().splitlines()) >= 4 for m in metrics),
            180,
            "three evaluations of every run of the first job",
        )
        (job,) = slurm_cluster.run("squeue", "-h", "-o", "%i").stdout.split()
        frozen = subprocess.run(["pkill", "-STOP", "-f", f"ficomm train out=\\S*{prefix}"])
        assert frozen.returncode == 0, "the training process of the first job was not found"
        # A time limit already passed: slurmctld times the job out at its next check.
        slurm_cluster.run("scontrol", "update", f"JobId={job}", "TimeLimit=0:1")
        out, _ = proc.communicate(timeout=480)
    finally:
        if proc.poll() is None:
            kill_group(proc)
            proc.communicate()
    assert proc.returncode == 0, out[-6000:]
    jobs = sacct_jobs(slurm_cluster, slurm_run_id(out))
    assert [j["state"] for j in jobs] == ["TIMEOUT", "COMPLETED"], jobs
    assert jobs[0]["id"] == job
    logs = workdir / "results/smoke/logs/train"
    if pack == 1:
        log = logs / "predator_prey/native/nps_comm/h32/seed0.log"
    else:
        log = logs / "train_pack_predator_prey_native_nps_comm_h32_s0_1.log"
    resumed = re.findall(r"resuming .*at env step (\d+)", log.read_text())
    assert len(resumed) == pack and all(int(s) > 0 for s in resumed), log.read_text()[-2000:]
    for m in metrics:
        rows = list(csv.DictReader(m.open()))
        assert int(rows[-1]["env_steps"]) + 500 >= 30_000
