"""W&B: an offline run logs the config and the same rows as metrics.csv, under a stable id
that a resumed run continues."""

from __future__ import annotations

import json
import math

from learner_helpers import read_metrics, run_train

from ficomm.analysis.wandb_reader import read_offline_run

ARGS = [
    "hidden=16",
    "batch_size=4",
    "eval_episodes=2",
    "budget=1000",
    "eval_interval=500",
    "share=ps",
    "comm=true",
    "wandb_mode=offline",
    "wandb_tags=[smoke]",
]


def test_offline_run_holds_config_tags_and_metrics(tmp_path):
    out = tmp_path / "run"
    res = run_train([*ARGS, f"out={out}"])
    assert res.returncode == 0, res.stderr
    files = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    run = read_offline_run(files[0])
    info = json.loads((out / "run_info.json").read_text())
    assert run["run_id"] == info["wandb_run_id"] and run["project"] == "ficomm"
    assert run["group"] == "predator_prey-native-PS+IQL+COMM-h16"  # the config without the seed
    assert set(run["tags"]) == {
        "env:predator_prey",
        "backend:native",
        "share:ps",
        "comm:true",
        "hidden:16",
        "smoke",
    }
    config = run["config"]
    assert config["share"] == "ps" and config["hidden"] == 16 and config["lr"] == 5e-4

    logged = run["history"]
    rows = read_metrics(out / "metrics.csv", drop_wall_clock=False)
    assert len(logged) == len(rows) == 2
    for got, row in zip(logged, rows, strict=True):
        assert got["_step"] == int(row["env_steps"])
        assert row.pop("backend") == "native"  # in the run's config and tags on W&B
        for key, value in row.items():
            if value == "":
                assert key not in got
            else:
                assert math.isclose(float(got[key]), float(value), rel_tol=1e-12), key


def test_run_id_is_stable_across_a_rerun(tmp_path):
    out = tmp_path / "run"
    assert run_train([*ARGS, "wandb_mode=disabled", f"out={out}"]).returncode == 0
    first = json.loads((out / "run_info.json").read_text())["wandb_run_id"]
    assert run_train([*ARGS, "wandb_mode=disabled", f"out={out}"]).returncode == 0
    assert json.loads((out / "run_info.json").read_text())["wandb_run_id"] == first
    assert not list((out / "wandb").glob("offline-run-*"))  # disabled writes no run
