"""The Snakemake workflow on this machine (local executor): lint, config validation, the grids
the presets expand to, an end-to-end run on a tiny grid, and resumption of a killed training job.

Every test works in a scratch copy of the workflow (Snakefile, workflow/, config/), so nothing
is written into the repository's results/ or paper_figures/.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import shutil
import signal
from itertools import product
from pathlib import Path

import pytest
import yaml
from workflow_utils import (
    REPO,
    cmdline,
    copy_workflow,
    descendants,
    job_counts,
    kill_group,
    shell_commands,
    snakemake,
    start_snakemake,
    wait_for,
)

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
RUN_PATH = re.compile(
    r"results/(?P<preset>[^/]+)/runs/(?P<env>[^/]+)/(?P<backend>[^/]+)/"
    r"(?P<share>ps|nps)_(?P<comm>comm|nocomm|att)/h(?P<hidden>\d+)/seed(?P<seed>\d+)"
)
# The paper's parameter counts for PredatorPrey at H 64, per owner.
PREDATOR_PREY_H64_PARAMS = {
    "NPS+IQL": 27_461,
    "NPS+IQL+COMM": 36_687,
    "PS+IQL": 27_717,
    "PS+IQL+COMM": 36_303,
}


def train_commands(output: str) -> list[dict[str, str]]:
    """The key=value arguments of every run of the `ficomm train` commands of a `snakemake -n
    -p` run, one dict per run: a pack's command (`seed=[0, 1]`, out=...seed{seed}) gives one
    per seed, with its own seed and out, and `pack` = the number of runs of its job."""
    runs = []
    for command in shell_commands(output):
        words = shlex.split(command.split(" > ")[0])
        assert words[:2] == ["ficomm", "train"], command
        args = dict(word.split("=", 1) for word in words[2:])
        seeds = yaml.safe_load(args["seed"])
        if not isinstance(seeds, list):
            runs.append({**args, "pack": "1"})
            continue
        assert "{seed}" in args["out"], command  # each run of a pack has its own directory
        for seed in seeds:
            out = args["out"].replace("{seed}", str(seed))
            runs.append({**args, "seed": str(seed), "out": out, "pack": str(len(seeds))})
    return runs


def train_job_counts(output: str) -> dict[str, int]:
    """Jobs per rule, with every pack rule (train_pack_*) counted under `train_pack`."""
    counts: dict[str, int] = {}
    for rule, n in job_counts(output).items():
        key = "train_pack" if rule.startswith("train_pack_") else rule
        counts[key] = counts.get(key, 0) + n
    return counts


def dry_run(workdir: Path, *args: str) -> str:
    res = snakemake(workdir, "-n", "-p", "--cores", "2", *args, timeout=180)
    assert res.returncode == 0, res.stdout[-4000:]
    return res.stdout


def check_run_paths(runs: list[dict[str, str]], preset: str) -> None:
    """Each run's directory names its parameters, and they are the ones it trains with."""
    for run in runs:
        m = RUN_PATH.fullmatch(run["out"])
        assert m, run["out"]
        assert m["preset"] == preset
        for key in ("env", "backend", "share", "hidden", "seed"):
            assert m[key] == run[key], (key, run)
        assert run["comm"] == ("true" if m["comm"] == "comm" else "false"), run
        assert run["threads"] == "1"


def test_lint_is_clean(tmp_path):
    res = snakemake(copy_workflow(tmp_path), "--lint", timeout=180)
    assert res.returncode == 0, res.stdout[-4000:]
    assert "Lints for" not in res.stdout
    assert "good condition" in res.stdout


def test_smoke_preset_touches_every_level_and_targets_paper_figures(tmp_path):
    workdir = copy_workflow(tmp_path)
    out = dry_run(workdir, "paper_figures")
    runs = train_commands(out)
    grid = CONFIG["presets"]["smoke"]["grid"]
    # The smoke grid: both envs (3s_vs_5z on smax), PS/NPS, COMM or not, H 32/64/128,
    # at least 2 seeds, every combination (the figures need them all).
    assert set(grid["env"]) == {"predator_prey", "3s_vs_5z"}
    assert set(grid["share"]) == {"ps", "nps"} and set(grid["comm"]) == {False, True}
    assert set(grid["hidden"]) == {32, 64, 128} and len(grid["seeds"]) >= 2
    assert CONFIG["presets"]["smoke"]["backend"]["3s_vs_5z"] == "smax"
    expected = {
        (env, share, str(comm).lower(), str(h), str(s))
        for env, share, comm, h, s in product(
            grid["env"], grid["share"], grid["comm"], grid["hidden"], grid["seeds"]
        )
    }
    got = {(r["env"], r["share"], r["comm"], r["hidden"], r["seed"]) for r in runs}
    assert got == expected and len(runs) == len(expected)
    check_run_paths(runs, "smoke")
    for run in runs:
        assert run["device"] == "cpu"
        assert run["budget"] == str(CONFIG["presets"]["smoke"]["budget"][run["env"]])
    # 3s_vs_5z on SMAX packs its seeds (the registry's CPU default), PredatorPrey does not.
    for run in runs:
        assert run["pack"] == ("1" if run["env"] == "predator_prey" else str(len(grid["seeds"])))
    counts = train_job_counts(out)
    pp_runs = sum(run["env"] == "predator_prey" for run in runs)
    assert counts == {
        "train": pp_runs,
        "train_pack": (len(expected) - pp_runs) // len(grid["seeds"]),
        "aggregate": 1,
        "report": 1,
        "paper_figures": 1,
    }, counts
    # Every figure of the paper is an output of the named target, Figure 5(a)/(b) included.
    for name in ("fig5a_3s_vs_5z_ps_iql_hidden_smax", "fig5b_3s_vs_5z_ps_iql_comm_hidden_smax"):
        assert f"paper_figures/smoke/{name}.pdf" in out
    assert "paper_figures/smoke/param_counts.csv" in out
    assert "paper_figures/smoke/replication.md" in out


def test_paper_preset_grid_budgets_and_resources(tmp_path):
    workdir = copy_workflow(tmp_path)
    out = dry_run(workdir, "--config", "preset=paper")
    runs = train_commands(out)
    assert len(runs) == 2 * 2 * 2 * 3 * len(CONFIG["presets"]["paper"]["grid"]["seeds"])
    assert len({r["seed"] for r in runs}) >= 5
    check_run_paths(runs, "paper")
    for run in runs:
        assert run["budget"] == {"predator_prey": "1000000", "3s_vs_5z": "3000000"}[run["env"]]
        assert run["eval_interval"] == "10000" and run["eval_episodes"] == "20"
        assert run["backend"] == {"predator_prey": "native", "3s_vs_5z": "sc2"}[run["env"]]
        # W&B groups are per configuration (ficomm train names them); the preset is a label.
        assert run["wandb_mode"] == "offline" and run["preset"] == "paper"
        assert "wandb_group" not in run
    counts = job_counts(out)
    assert counts["publish_wandb"] == 1 and counts["all"] == 1
    # Resources come from the rule: memory per backend, run time from the budget.
    resources = {}
    for block in out.split("\n\n"):
        m = re.search(r"results/paper/runs/[^\n]*?/(native|sc2)/[^\n]*metrics\.csv", block)
        r = re.search(r"resources: (.*)", block)
        if m and r and "rule train" in block:
            resources[m[1]] = dict(kv.split("=", 1) for kv in r[1].split(", "))
    assert set(resources) == {"native", "sc2"}
    assert int(resources["sc2"]["mem_mb"]) > int(resources["native"]["mem_mb"])
    assert int(resources["sc2"]["runtime"]) > int(resources["native"]["runtime"]) >= 60
    assert resources["native"]["gpu"] == "0"


def test_extra_grids_add_cross_products_and_name_each_run_once(tmp_path):
    """H 64 x 2 seeds, plus H 32 x seeds 0-2, plus seed 0 again (already in the grid)."""
    grid = {"env": ["predator_prey"], "share": ["ps"], "comm": [True], "hidden": [64]}
    extra = [{"hidden": [32], "seeds": [0, 1, 2]}, {"seeds": [0]}]
    overlay = {"presets": {"smoke": {"grid": {**grid, "seeds": [0, 1]}, "extra_grids": extra}}}
    workdir = copy_workflow(tmp_path, overlay)
    runs = train_commands(dry_run(workdir, "--configfile", "overlay.yaml"))
    assert sorted((r["hidden"], r["seed"]) for r in runs) == [
        ("32", "0"), ("32", "1"), ("32", "2"), ("64", "0"), ("64", "1"),
    ]  # fmt: skip
    check_run_paths(runs, "smoke")
    bad = {"presets": {"smoke": {"extra_grids": [{"env": ["pong"]}]}}}
    res = snakemake(copy_workflow(tmp_path / "bad", bad), "-n", "--configfile", "overlay.yaml")
    assert res.returncode != 0 and "presets.smoke.extra_grids[0].env" in res.stdout


def test_attention_is_a_level_of_the_channel_factor(tmp_path):
    """comm: [false, true, attention] -> nocomm / comm / att run directories; only the att runs
    pass channel=attention, so the paper's runs keep their arguments (and their reruns)."""
    grid = {"env": ["predator_prey"], "share": ["ps", "nps"], "hidden": [64], "seeds": [0]}
    overlay = {"presets": {"smoke": {"grid": {**grid, "comm": [False, True, "attention"]}}}}
    workdir = copy_workflow(tmp_path, overlay)
    runs = train_commands(dry_run(workdir, "--configfile", "overlay.yaml"))
    by_dir = {r["out"].split("/")[-3]: r for r in runs}
    assert sorted(by_dir) == ["nps_att", "nps_comm", "nps_nocomm", "ps_att", "ps_comm", "ps_nocomm"]
    for share in ("ps", "nps"):
        assert by_dir[f"{share}_att"]["comm"] == "true"
        assert by_dir[f"{share}_att"]["channel"] == "attention"
        assert (
            "channel" not in by_dir[f"{share}_comm"] and by_dir[f"{share}_comm"]["comm"] == "true"
        )
        assert by_dir[f"{share}_nocomm"]["comm"] == "false"


def test_gpu_resource_trains_on_cuda(tmp_path):
    workdir = copy_workflow(tmp_path)
    runs = train_commands(dry_run(workdir, "--set-resources", "train:gpu=1"))
    single = [r for r in runs if r["pack"] == "1"]
    assert single and all(r["device"] == "cuda" for r in single)


def test_device_cuda_packs_every_configuration_and_requests_one_gpu_per_pack(tmp_path):
    """device: cuda (top level) -> the registry's GPU pack size (20): each configuration's
    seeds of the smoke grid train in one job on one GPU; outputs stay per run."""
    workdir = copy_workflow(tmp_path)
    out = dry_run(workdir, "--config", "device=cuda")
    runs = train_commands(out)
    seeds = CONFIG["presets"]["smoke"]["grid"]["seeds"]
    assert runs and all(r["device"] == "cuda" and r["pack"] == str(len(seeds)) for r in runs)
    assert train_job_counts(out).get("train", 0) == 0
    assert train_job_counts(out)["train_pack"] == len(runs) // len(seeds)
    for block in out.split("\n\n"):
        if "rule train_pack_" in block:
            assert "gpu=1" in block, block


def test_pack_setting_packs_seeds_and_scales_the_job_resources(tmp_path):
    """presets.<name>.pack per env: PredatorPrey 2 seeds per job, 3s_vs_5z alone. A pack's job
    asks for one run's memory plus each further run's own, and for the runs' time on one core."""
    from ficomm.envs import backend_spec

    overlay = {"presets": {"smoke": {"pack": {"predator_prey": 2, "3s_vs_5z": 1}}}}
    workdir = copy_workflow(tmp_path, overlay)
    out = dry_run(workdir, "--configfile", "overlay.yaml")
    runs = train_commands(out)
    assert {r["pack"] for r in runs if r["env"] == "predator_prey"} == {"2"}
    assert {r["pack"] for r in runs if r["env"] == "3s_vs_5z"} == {"1"}
    resources = {}
    for block in out.split("\n\n"):
        rule, res = re.search(r"rule (\S+):", block), re.search(r"resources: (.*)", block)
        if rule and res and rule[1].startswith("train"):
            kind = "pack" if rule[1].startswith("train_pack_") else rule[1]
            if kind == "pack" or "predator_prey" in block:
                resources[kind] = dict(kv.split("=", 1) for kv in res[1].split(", "))
    pp = backend_spec("predator_prey", "native")
    assert int(resources["pack"]["mem_mb"]) == pp.mem_mb + pp.run_mb
    one_core = 2 * CONFIG["presets"]["smoke"]["budget"]["predator_prey"] / pp.steps_per_second
    assert int(resources["pack"]["runtime"]) == math.ceil(1.5 * one_core / 60) + 10  # + start-up
    # 3s_vs_5z (smax) alone: its own memory, unscaled
    smax = [b for b in out.split("\n\n") if "rule train:" in b and "3s_vs_5z" in b]
    assert smax and f"mem_mb={backend_spec('3s_vs_5z', 'smax').mem_mb}," in smax[0]
    bad = {"presets": {"smoke": {"pack": {"predator_prey": 2}}}}
    res = snakemake(copy_workflow(tmp_path / "bad", bad), "-n", "--configfile", "overlay.yaml")
    assert res.returncode != 0 and "presets.smoke.pack.3s_vs_5z" in res.stdout


def test_train_keys_and_per_point_overrides(tmp_path):
    overlay = {
        "presets": {
            "smoke": {
                "train": {"lr": 0.001, "env_args": {"penalty": -0.5}},
                "overrides": [
                    {
                        "where": {"env": "predator_prey", "share": "nps", "comm": True, "seed": 1},
                        "set": {"msg_hidden": 32},
                    }
                ],
            }
        },
        "wandb_mode": "disabled",
    }
    workdir = copy_workflow(tmp_path, overlay)
    runs = train_commands(dry_run(workdir, "--configfile", "overlay.yaml"))
    assert all(r["lr"] == "0.001" and r["env_args.penalty"] == "-0.5" for r in runs)
    assert all(r["wandb_mode"] == "disabled" for r in runs)
    hit = [r for r in runs if "msg_hidden" in r]
    assert len(hit) == 3  # H 32, 64, 128
    assert all(
        (r["env"], r["share"], r["comm"], r["seed"], r["msg_hidden"])
        == ("predator_prey", "nps", "true", "1", "32")
        for r in hit
    )


@pytest.mark.parametrize(
    ("args", "overlay", "message"),
    [
        (("--config", "preset=nope"), None, "config: preset: unknown preset 'nope'"),
        (
            (),
            {"presets": {"smoke": {"budget": {"predator_prey": 0}}}},
            "['budget']['predator_prey']",
        ),
        ((), {"presets": {"smoke": {"grid": {"share": ["ps", "xps"]}}}}, "xps"),
        ((), {"presets": {"smoke": {"backend": {"3s_vs_5z": "native"}}}}, "backend.3s_vs_5z"),
        ((), {"presets": {"smoke": {"grid": {"env": ["pong"]}}}}, "unknown env 'pong'"),
        ((), {"presets": {"smoke": {"train": {"seed": 3}}}}, "seed"),
        ((), {"wandb_mode": "sometimes"}, "sometimes"),
    ],
)
def test_bad_config_is_rejected_naming_the_field(tmp_path, args, overlay, message):
    workdir = copy_workflow(tmp_path, overlay)
    extra = ("--configfile", "overlay.yaml") if overlay else ()
    res = snakemake(workdir, "-n", "--cores", "1", *extra, *args, timeout=120)
    assert res.returncode != 0
    assert message in res.stdout, res.stdout[-3000:]


@pytest.mark.slow
def test_tiny_grid_end_to_end(tmp_path):
    """`snakemake` (rule all) on a tiny grid of both envs: runs, table, figures, tables,
    replication report and the offline W&B publish; a second call has nothing to do."""
    overlay = {
        "presets": {
            "smoke": {
                "grid": {"share": ["nps"], "comm": [False, True], "hidden": [64], "seeds": [0]},
                "budget": {"predator_prey": 200, "3s_vs_5z": 100},
                "eval_interval": 100,
                "eval_episodes": 2,
            }
        }
    }
    workdir = copy_workflow(tmp_path, overlay)
    res = snakemake(workdir, "--cores", "2", "--configfile", "overlay.yaml", timeout=480)
    assert res.returncode == 0, res.stdout[-6000:]

    run_dirs = sorted(p.parent for p in (workdir / "results/smoke/runs").rglob("metrics.csv"))
    assert len(run_dirs) == 4
    for run_dir in run_dirs:
        rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
        assert rows and rows[0]["env_steps"] == "0"
        assert (run_dir / "checkpoint").is_dir()

    table = list(csv.DictReader((workdir / "results/smoke/all_runs.csv").open()))
    assert len({row["run_dir"] for row in table}) == 4
    assert {row["method"] for row in table} == {"NPS+IQL", "NPS+IQL+COMM"}
    figures = workdir / "paper_figures/smoke"
    manifest = json.loads((figures / "figures.json").read_text())
    for fig in manifest["figures"]:
        for name in fig["files"]:
            assert (figures / name).stat().st_size > 0, name
    # The parameter-count table comes from the runs' run_info.json through the aggregated table.
    params = (figures / "param_counts.csv").read_text()
    for method in ("NPS+IQL", "NPS+IQL+COMM"):
        assert str(PREDATOR_PREY_H64_PARAMS[method]) in params, (method, params)
    report = json.loads((figures / "replication.json").read_text())
    assert len(report["claims"]) == 5
    assert (figures / "replication.md").read_text().startswith("# Replication report")
    record = json.loads((workdir / "results/smoke/wandb_publish.json").read_text())
    assert record["mode"] == "offline"
    assert list((workdir / "results/smoke/wandb").rglob("*.wandb"))

    again = snakemake(workdir, "--cores", "2", "--configfile", "overlay.yaml", "-n", timeout=120)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, again.stdout[-3000:]


KILL_OVERLAY = {
    "presets": {
        "smoke": {
            "budget": {"predator_prey": 3000},
            "eval_interval": 200,
            "eval_episodes": 1,
        }
    },
    "wandb_mode": "disabled",
}
KILL_RUN = "results/smoke/runs/predator_prey/native/nps_comm/h32/seed0"
KILL_LOG = "results/smoke/logs/train/predator_prey/native/nps_comm/h32/seed0.log"


def _kill_trainer_mid_run(workdir, *args):
    """Start Snakemake, SIGKILL its training job after three evaluations, and return
    (Snakemake's exit code, its output, the metrics rows seen before the kill)."""
    metrics = workdir / KILL_RUN / "metrics.csv"
    proc = start_snakemake(workdir, *args)
    try:

        def trainer_pid():
            for pid in descendants(proc.pid):
                words = cmdline(pid)
                if "train" in words and any(w.startswith("out=") for w in words):
                    return pid
            return None

        pid = wait_for(trainer_pid, 120, "the training job to start")
        # Wait for three evaluations (each writes metrics.csv, then the checkpoint).
        wait_for(
            lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 4,
            120,
            "three evaluations",
            interval=0.05,
        )
        before = list(csv.DictReader(metrics.open()))
        os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            kill_group(proc)
            proc.communicate()
    return proc.returncode, out, before


def _check_resumed(workdir, before):
    """The job's log says it resumed; the rows written before the kill come back unchanged
    (wall-clock columns included, which a fresh run could not reproduce); the run finished."""
    log = (workdir / KILL_LOG).read_text()
    assert "resuming" in log, log[-2000:]
    m = re.search(r"checkpoint at env step (\d+)", log)
    assert m, log[-2000:]
    resumed_at = int(m[1])
    # The checkpoint follows each metrics.csv write, so it holds every row we saw but perhaps
    # the last one.
    kept = [row for row in before if int(row["env_steps"]) <= resumed_at]
    assert len(kept) >= len(before) - 1 >= 2
    after = list(csv.DictReader((workdir / KILL_RUN / "metrics.csv").open()))
    assert after[: len(kept)] == kept
    assert int(after[-1]["env_steps"]) > int(before[-1]["env_steps"])
    assert int(after[-1]["env_steps"]) + 200 >= 3000


@pytest.mark.slow
def test_killed_training_job_resumes_from_its_checkpoint(tmp_path):
    """SIGKILL a training job under Snakemake after its first checkpoints; Snakemake fails and
    deletes metrics.csv; a rerun resumes from the checkpoint (not from scratch) and finishes."""
    workdir = copy_workflow(tmp_path, KILL_OVERLAY)
    target = f"{KILL_RUN}/metrics.csv"
    # (--configfile takes several values: the target goes before it)
    args = (target, "--cores", "1", "--retries", "0", "--configfile", "overlay.yaml")
    code, out, before = _kill_trainer_mid_run(workdir, *args)
    assert code != 0, out[-3000:]
    assert not (workdir / target).exists(), "Snakemake should delete the output of the failed job"
    assert any((workdir / KILL_RUN / "checkpoint").iterdir()), "the checkpoint must survive"
    assert 0 < int(before[-1]["env_steps"]) < 3000

    res = snakemake(workdir, *args, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:]
    _check_resumed(workdir, before)


@pytest.mark.slow
def test_killed_training_job_is_retried_from_its_checkpoint(tmp_path):
    """With retries (as both profiles set), Snakemake itself reruns a killed training job in
    the same invocation, and the retry resumes from the checkpoint."""
    workdir = copy_workflow(tmp_path, KILL_OVERLAY)
    args = (f"{KILL_RUN}/metrics.csv", "--cores", "1", "--retries", "1")
    code, out, before = _kill_trainer_mid_run(workdir, *args, "--configfile", "overlay.yaml")
    assert code == 0, out[-3000:]
    _check_resumed(workdir, before)


def test_presets_write_their_own_figures_and_cannot_share_a_folder(tmp_path):
    """Each preset's figures go to paper_figures/<preset>/; a preset that names another's
    folder is refused before anything runs."""
    workdir = copy_workflow(tmp_path)
    assert "paper_figures/paper/replication.md" in dry_run(workdir, "--config", "preset=paper")
    clash = copy_workflow(
        tmp_path / "clash", {"presets": {"paper": {"figures": "paper_figures/smoke"}}}
    )
    res = snakemake(clash, "-n", "--configfile", "overlay.yaml", timeout=120)
    assert res.returncode != 0
    assert "presets.paper.figures" in res.stdout and "already the folder" in res.stdout, res.stdout[
        -2000:
    ]


SHIPPED = [("replication", "replication")] + [
    (folder, preset)
    for folder, preset in (("beyond/attention", "attention_small"), ("beyond/scale", "scale_small"))
    if (REPO / folder / "runs").is_dir()
]


@pytest.mark.parametrize("folder, preset", SHIPPED)
def test_shipped_runs_schedule_no_training(tmp_path, folder, preset):
    """The runs shipped in replication/ and beyond/ (some trained before later learning keys
    such as `channel` existed) still match their preset: the guard reads a missing key as its
    default, and the dry run schedules no train job (retraining would replace them)."""
    workdir = copy_workflow(tmp_path)
    shutil.copytree(REPO / folder, workdir / folder)
    # forced: the shipped figures may be up to date, and the question is what else would run
    out = dry_run(
        workdir, "paper_figures", "--forcerun", "paper_figures", "--config", f"preset={preset}"
    )
    counts = train_job_counts(out)
    assert counts.get("paper_figures") == 1, counts
    assert "train" not in counts and "train_pack" not in counts, counts
