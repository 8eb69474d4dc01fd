"""W&B: an offline run logs the config and the same rows as metrics.csv, under a stable id
that a resumed run continues."""

from __future__ import annotations

import json
import math

import pandas as pd
from learner_helpers import read_metrics, run_train

from ficomm.analysis.wandb_report import configuration_groups
from ficomm.wandb_files import read_offline_run

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
    # The group is the configuration without the seed: every learning key off its default.
    group = (
        "predator_prey-native-PS+IQL+COMM-h16"
        "-batch_size=4-budget=1000-eval_episodes=2-eval_interval=500"
    )
    assert run["group"] == group
    assert run["name"] == f"{group}-s0" and run["job_type"] == "train"
    assert set(run["tags"]) == {
        "env:predator_prey",
        "backend:native",
        "share:ps",
        "comm:true",
        "hidden:16",
        "method:PS+IQL+COMM",
        "seed:0",
        "smoke",
    }
    assert run["config"]["method"] == "PS+IQL+COMM"
    config = run["config"]
    assert config["share"] == "ps" and config["hidden"] == 16 and config["lr"] == 5e-4

    logged = run["history"]
    rows = read_metrics(out / "metrics.csv", drop_wall_clock=False)
    assert len(logged) == len(rows) == 3  # the last one the final policy's
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


def test_offline_grid_has_one_group_per_configuration_and_unique_names(tmp_path):
    """Several configurations x seeds, read back from their offline run files: distinct
    names, one group per configuration holding exactly its seeds, the preset tag."""
    runs, dirs = {}, []
    for share in ("ps", "nps"):
        for seed in (0, 1):
            dirs.append(f"{share}_s{seed}")
            out = tmp_path / dirs[-1]
            extra = [f"share={share}", f"seed={seed}", "preset=grid", f"out={out}"]
            res = run_train([*[a for a in ARGS if not a.startswith("share=")], *extra])
            assert res.returncode == 0, res.stderr
            (file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
            runs[(share, seed)] = read_offline_run(file)
    names = [r["name"] for r in runs.values()]
    assert len(set(names)) == len(names)
    groups: dict[str, set] = {}
    for (share, seed), run in runs.items():
        groups.setdefault(run["group"], set()).add((share, seed))
        assert "preset:grid" in run["tags"] and run["config"]["preset"] == "grid"
        assert f"seed:{seed}" in run["tags"] and run["job_type"] == "train"
    assert sorted(groups.values(), key=sorted) == [{("nps", 0), ("nps", 1)}, {("ps", 0), ("ps", 1)}]

    # The publish step's table of groups, computed from the run directories, names the same
    # groups, runs and ids as the offline run files.
    table = configuration_groups(pd.DataFrame({"run_dir": [str(tmp_path / d) for d in dirs]}))
    assert set(table["group"]) == set(groups) and set(table["preset"]) == {"grid"}
    for row in table.itertuples():
        mine = [r for r in runs.values() if r["group"] == row.group]
        assert sorted(row.run_names.split()) == sorted(r["name"] for r in mine)
        assert sorted(row.run_ids.split()) == sorted(r["run_id"] for r in mine)
        assert row.seeds == "0 1"


def test_a_pack_writes_one_offline_run_per_run_with_its_own_rows(tmp_path):
    """The runs of a pack are W&B runs side by side: each run directory holds its own run
    file, with its own id, name and the rows of its own metrics.csv."""
    res = run_train([*ARGS, "seed=[0, 1]", f"out={tmp_path}/s{{seed}}"])
    assert res.returncode == 0, res.stderr
    ids = set()
    for seed in (0, 1):
        out = tmp_path / f"s{seed}"
        files = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(files) == 1, seed
        run = read_offline_run(files[0])
        info = json.loads((out / "run_info.json").read_text())
        assert run["run_id"] == info["wandb_run_id"] and run["name"].endswith(f"-s{seed}")
        assert f"seed:{seed}" in run["tags"] and run["config"]["seed"] == seed
        rows = read_metrics(out / "metrics.csv")
        logged = run["history"]
        assert [g["_step"] for g in logged] == [int(r["env_steps"]) for r in rows]
        for got, row in zip(logged, rows, strict=True):
            assert math.isclose(got["eval_return_mean"], float(row["eval_return_mean"]))
        ids.add(run["run_id"])
    assert len(ids) == 2
