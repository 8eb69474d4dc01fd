"""The local SLURM test cluster works the way the Snakemake SLURM executor uses it."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime, timedelta

import pytest

# ~10 s to bring the cluster up (once per session), ~15 s for the tests.
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_node_idle_in_default_partition(slurm_cluster):
    out = slurm_cluster.run("sinfo", "-h", "-o", "%P|%T|%N|%l").stdout.split()
    assert out == [f"{slurm_cluster.partition}*|idle|{slurm_cluster.node}|infinite"]


def test_root_has_default_account(slurm_cluster):
    # The plugin validates accounts with exactly this query.
    out = slurm_cluster.run(
        "sacctmgr", "-n", "-s", "list", "user", "root", "format=account%256"
    ).stdout.split()
    assert slurm_cluster.account in out


def test_batch_job_with_inner_srun_completes(slurm_cluster, tmp_path):
    out = tmp_path / "job.out"
    script = "#!/bin/sh\necho batch-$SLURM_JOB_ID\nsrun -n1 sh -c 'echo step-$SLURM_STEP_ID'\n"
    job = slurm_cluster.sbatch(script, "--job-name=ficomm-ok", f"--output={out}", cwd=tmp_path)
    assert slurm_cluster.wait_for_job(job) == ("COMPLETED", "0:0")
    assert out.read_text().split() == [f"batch-{job}", "step-0"]
    steps = slurm_cluster.run(
        "sacct", "-n", "-P", "-j", job, "--format=JobID,State,ExitCode"
    ).stdout.split()
    assert f"{job}.0|COMPLETED|0:0" in steps


def test_failing_job_is_failed_with_its_exit_code(slurm_cluster, tmp_path):
    job = slurm_cluster.sbatch("#!/bin/sh\nexit 3\n", f"--output={tmp_path}/fail.out")
    assert slurm_cluster.wait_for_job(job) == ("FAILED", "3:0")


def test_srun_stripped_of_slurm_env_finds_the_cluster(slurm_cluster, tmp_path):
    # The Snakemake jobstep plugin drops SLURM_* (SLURM_CONF included) before its inner srun,
    # keeping SLURM_JOB_ID: that srun must still find the cluster through /etc/slurm/slurm.conf.
    script = (
        "#!/bin/sh\n"
        'env -i PATH="$PATH" SLURM_JOB_ID="$SLURM_JOB_ID" srun -n1 --cpu-bind=q echo inner-ok\n'
    )
    out = tmp_path / "inner.out"
    job = slurm_cluster.sbatch(script, f"--output={out}", "--cpus-per-task=1", "--mem=100")
    assert slurm_cluster.wait_for_job(job) == ("COMPLETED", "0:0")
    lines = out.read_text().splitlines()
    # task/none cannot bind CPUs; srun says so on stderr and runs the step anyway.
    assert lines[-1] == "inner-ok"
    assert set(lines[:-1]) <= {"srun: cluster configuration lacks support for cpu binding"}


def test_plugin_status_query_lists_jobs_by_name(slurm_cluster, tmp_path):
    # The Snakemake SLURM plugin's status query: jobs named by its run uuid, all clusters.
    name = "ficomm-status-probe"
    jobs = [
        slurm_cluster.sbatch(script, f"--job-name={name}", f"--output={tmp_path}/%j.out")
        for script in ("#!/bin/sh\ntrue\n", "#!/bin/sh\nfalse\n")
    ]
    for job in jobs:
        slurm_cluster.wait_for_job(job)
    # Windowed sacct queries select by eligible time, which reaches slurmdbd a moment after
    # the job itself: poll as the plugin does.
    since = datetime.now() - timedelta(days=2)
    query = [
        "sacct", "-X", "--parsable2", "--clusters", "all", "--noheader",
        "--format=JobIdRaw,State", "--starttime", f"{since:%Y-%m-%dT%H:00}",
        "--endtime", "now", "--name", name,
    ]  # fmt: skip
    expected = sorted([f"{jobs[0]}|COMPLETED", f"{jobs[1]}|FAILED"])
    deadline = time.monotonic() + 20
    while True:
        res = subprocess.run(
            query, capture_output=True, text=True, check=True, env=slurm_cluster.env, timeout=30
        )
        if sorted(res.stdout.split()) == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(res.stdout.split()) == expected
