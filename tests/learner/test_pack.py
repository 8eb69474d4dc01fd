"""Packs: several runs of one configuration trained side by side by one `ficomm train`.

Each run of a pack keeps its own run directory, random streams, replay buffer, episodes,
epsilon and evaluation schedule, so its metrics equal those of the same run trained alone,
exactly (the same computation on the same data, so equality holds bit for bit even in
float32). Runs may differ in the keys declared pack=True (seed, budget, lr, ...); a run that
reaches its budget stops while the others go on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from learner_helpers import SMALL_RUN, read_metrics, run_train

from ficomm.config import PACK_KEYS, ConfigError, load_pack
from ficomm.train import main as train_main

EVAL = ["eval_interval=500"]
PACK = {"seed": [0, 1, 2], "budget": [1000, 2000, 2000], "lr": [5e-4, 1e-3, 5e-4]}


def _alone_args(i: int) -> list[str]:
    return [f"{k}={v[i]}" for k, v in PACK.items()]


def _pack_args() -> list[str]:
    return [f"{k}=[{', '.join(map(str, v))}]" for k, v in PACK.items()]


@pytest.mark.parametrize(
    "method",
    [
        ["share=ps", "comm=false"],
        ["share=ps", "comm=true"],
        ["share=nps", "comm=false"],
        ["share=nps", "comm=true"],
    ],
    ids=["PS", "PS+COMM", "NPS", "NPS+COMM"],
)
def test_packed_runs_equal_the_same_runs_trained_alone(tmp_path, method):
    base = [*SMALL_RUN, *EVAL, *method]
    assert train_main([*base, *_pack_args(), f"out={tmp_path}/pack/s{{seed}}"]) == 0
    for i, seed in enumerate(PACK["seed"]):
        assert train_main([*base, *_alone_args(i), f"out={tmp_path}/alone/s{seed}"]) == 0
        packed = read_metrics(tmp_path / "pack" / f"s{seed}" / "metrics.csv")
        alone = read_metrics(tmp_path / "alone" / f"s{seed}" / "metrics.csv")
        assert packed == alone, f"seed {seed}"
        # each run stopped at its own budget (run 0 before the others)
        assert int(packed[-1]["env_steps"]) < PACK["budget"][i]
        info = json.loads((tmp_path / "pack" / f"s{seed}" / "run_info.json").read_text())
        assert info["seed"] == seed
    # the runs really differ (seeds, learning rates), so the equality above says something
    runs = [read_metrics(tmp_path / "pack" / f"s{s}" / "metrics.csv") for s in PACK["seed"]]
    assert runs[1][1:] != runs[2][1:]


def test_killed_pack_resumes_every_run_including_a_finished_one(tmp_path):
    args = [
        *SMALL_RUN,
        *EVAL,
        "share=nps",
        "comm=true",
        "seed=[0, 1, 2]",
        "budget=[1000, 6000, 6000]",
        f"out={tmp_path}/pack/s{{seed}}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ficomm.train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    csv = tmp_path / "pack" / "s1" / "metrics.csv"
    deadline = time.time() + 120
    # header + evaluations at 0, 500, 1000, 1500: run 0 (budget 1000) has finished by then
    while time.time() < deadline and not (csv.exists() and len(csv.read_text().splitlines()) >= 5):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert len(read_metrics(csv)) < 12  # it really stopped early
    res = run_train(args)
    assert res.returncode == 0, res.stderr
    assert f"{tmp_path}/pack/s0 is already finished" in res.stderr
    assert res.stderr.count("resuming") == 2
    for i, (seed, budget) in enumerate([(0, 1000), (1, 6000), (2, 6000)]):
        out = tmp_path / "alone" / f"s{seed}"
        base = [*SMALL_RUN, *EVAL, "share=nps", "comm=true"]
        assert train_main([*base, f"seed={seed}", f"budget={budget}", f"out={out}"]) == 0
        assert read_metrics(tmp_path / "pack" / f"s{seed}" / "metrics.csv") == read_metrics(
            out / "metrics.csv"
        ), f"run {i}"


def test_sigterm_stops_every_run_of_a_pack_with_a_checkpoint(tmp_path):
    args = [
        *SMALL_RUN,
        *EVAL,
        "share=ps",
        "comm=true",
        "seed=[3, 4]",
        "budget=20000",
        f"out={tmp_path}/s{{seed}}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ficomm.train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    csv = tmp_path / "s4" / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (csv.exists() and len(csv.read_text().splitlines()) >= 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.count("received SIGTERM") == 2 and err.count("rerun the same command") == 2


def test_pack_keys_and_bad_packs(tmp_path):
    cfgs = load_pack(None, ["seed=[0, 1]", "lr=[1e-3, 5e-4]", f"out={tmp_path}/s{{seed}}-{{lr}}"])
    assert [(c.seed, c.lr, c.out) for c in cfgs] == [
        (0, 1e-3, f"{tmp_path}/s0-1e-3"),  # the values as the user spelled them
        (1, 5e-4, f"{tmp_path}/s1-5e-4"),
    ]
    assert load_pack(None, ["seed=[5, 6]", "out=[a, b]"])[1].out == "b"
    assert [c.seed for c in load_pack(None, ["seed=3", "out=x"])] == [3]
    assert {"seed", "lr", "budget", "out"} <= set(PACK_KEYS) and "hidden" not in PACK_KEYS
    cases = {
        ("seed=[0, 1]", "out=runs/x"): "out: a pack of 2 runs needs a directory per run",
        ("seed=[0, 1]", "lr=[1e-3]", "out=r/{seed}"): "pack: every list of a pack needs the same",
        ("seed=[0, 1]", "hidden=[32, 64]", "out=r/{seed}"): "hidden: the runs of a pack share",
        ("seed=[0, 0]", "out=r/{lr}"): "out: the template 'r/{lr}' may name only",
        ("seed=[0, 0]", "out=[a, a]"): "out: runs 0 and 1 of the pack share a",
        ("seed=[0, -1]", "out=r/{seed}"): "seed: must be a non-negative integer",
    }
    for args, message in cases.items():
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("{", r"\{")):
            load_pack(None, list(args))


def test_bad_pack_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    res = run_train([*SMALL_RUN, "seed=[0, 1]", f"out={tmp_path}/x"])
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a directory per run" in lines[0]
    assert not (tmp_path / "x").exists()  # refused before anything was created
