"""Packs: several runs of one configuration trained side by side by one `ficomm train`.

Each run of a pack keeps its own run directory, random streams, replay buffer, episodes,
epsilon and evaluation schedule, so its metrics equal those of the same run trained alone,
exactly (the same computation on the same data, so equality holds bit for bit even in
float32). Runs may differ in the keys declared pack=True (seed, budget, lr, ...); a run that
reaches its budget stops while the others go on."""

from __future__ import annotations

import json
import signal

import pytest
from learner_helpers import SMALL_RUN, read_metrics, run_train, signal_when

from ficomm.config import PACK_KEYS, ConfigError, load_pack
from ficomm.train import main as train_main

EVAL = ["eval_interval=500"]
# per_run: the runs differ in lr, so each learns on its own (as auto does on a CPU); stacked:
# they share the learner's keys and stack (one gradient step for the pack, as auto does on cuda)
PACKS = {
    "per_run": {"seed": [0, 1, 2], "budget": [1000, 2000, 2000], "lr": [5e-4, 1e-3, 5e-4]},
    "stacked": {"seed": [0, 1, 2], "budget": [1000, 2000, 2000]},
}


def _alone_args(pack: dict, i: int) -> list[str]:
    return [f"{k}={v[i]}" for k, v in pack.items()]


def _pack_args(pack: dict) -> list[str]:
    args = [f"{k}=[{', '.join(map(str, v))}]" for k, v in pack.items()]
    return args if "lr" in pack else [*args, "pack_learning=stacked"]


@pytest.mark.parametrize("learning", list(PACKS))
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
def test_packed_runs_equal_the_same_runs_trained_alone(tmp_path, method, learning):
    """Per run, metric for metric. Exactly where each run's computation is the same: per
    run; stacked, the compiled kernel computes each owner's rows alone, and a run's batch
    padded to the pack's longest episode adds zero rows after its own. Not bit for bit for
    stacked PS+COMM: its message net reads an owner's rows agent by agent, so the padding
    falls between agents and the weight gradients' sums round differently in the last place;
    there the numbers agree to float32 rounding."""
    exact = learning == "per_run" or method != ["share=ps", "comm=true"]
    pack = PACKS[learning]
    base = [*SMALL_RUN, *EVAL, *method]
    assert train_main([*base, *_pack_args(pack), f"out={tmp_path}/pack/s{{seed}}"]) == 0
    for i, seed in enumerate(pack["seed"]):
        assert train_main([*base, *_alone_args(pack, i), f"out={tmp_path}/alone/s{seed}"]) == 0
        packed = read_metrics(tmp_path / "pack" / f"s{seed}" / "metrics.csv")
        alone = read_metrics(tmp_path / "alone" / f"s{seed}" / "metrics.csv")
        if exact:
            assert packed == alone, f"seed {seed}"
        else:
            assert [r.keys() for r in packed] == [r.keys() for r in alone]
            for got, want in zip(packed, alone, strict=True):
                for k, v in want.items():
                    assert got[k] == v or float(got[k]) == pytest.approx(float(v), rel=1e-5), k
        # each run stopped at its own budget (run 0 before the others), its last row the
        # final policy's
        assert int(packed[-2]["env_steps"]) < pack["budget"][i] <= int(packed[-1]["env_steps"])
        info = json.loads((tmp_path / "pack" / f"s{seed}" / "run_info.json").read_text())
        assert info["seed"] == seed
        assert (info["pack_runs"], info["pack_learning"]) == (3, learning)
    # the runs really differ (seeds, learning rates), so the equality above says something
    runs = [read_metrics(tmp_path / "pack" / f"s{s}" / "metrics.csv") for s in pack["seed"]]
    assert runs[1][1:] != runs[2][1:]


def test_a_stacked_pack_on_the_torch_layers_acts_in_one_forward(tmp_path, monkeypatch):
    """kernel=torch (the layers a GPU runs): the stacked pack also acts in one forward for
    all its runs (`StackedPolicy`); each run plays the episodes it plays alone, its losses
    equal to float32 rounding (the torch layers' batched matmuls round per shape)."""
    import ficomm.rollout as rollout

    calls = []
    forward = rollout.StackedPolicy.q_values
    monkeypatch.setattr(
        rollout.StackedPolicy,
        "q_values",
        lambda self, live, obs: calls.append(len(self.rows)) or forward(self, live, obs),
    )
    base = [*SMALL_RUN, *EVAL, "share=nps", "comm=true", "kernel=torch"]
    pack = PACKS["stacked"]
    assert train_main([*base, *_pack_args(pack), f"out={tmp_path}/pack/s{{seed}}"]) == 0
    assert calls[0] == 3 and 2 in calls  # all runs, then those still training
    for i, seed in enumerate(pack["seed"]):
        assert train_main([*base, *_alone_args(pack, i), f"out={tmp_path}/alone/s{seed}"]) == 0
        packed = read_metrics(tmp_path / "pack" / f"s{seed}" / "metrics.csv")
        alone = read_metrics(tmp_path / "alone" / f"s{seed}" / "metrics.csv")
        assert [r["env_steps"] for r in packed] == [r["env_steps"] for r in alone]
        for got, want in zip(packed, alone, strict=True):
            assert got["eval_return_mean"] == want["eval_return_mean"]
            if want["train_loss"]:
                assert float(got["train_loss"]) == pytest.approx(
                    float(want["train_loss"]), rel=1e-4
                )


def test_stacked_needs_shared_learner_keys(tmp_path):
    res = run_train(
        [
            *SMALL_RUN,
            "seed=[0, 1]",
            "lr=[1e-3, 5e-4]",
            "pack_learning=stacked",
            f"out={tmp_path}/s{{seed}}",
        ]
    )
    assert res.returncode == 2
    assert "pack_learning: 'stacked' needs the runs of a pack to share lr" in res.stderr
    assert not (tmp_path / "s0").exists()  # refused before anything was created


@pytest.mark.parametrize("learning", ["per_run", "stacked"])
def test_killed_pack_resumes_every_run_including_a_finished_one(tmp_path, learning):
    args = [
        *SMALL_RUN,
        *EVAL,
        "share=nps",
        "comm=true",
        "seed=[0, 1, 2]",
        "budget=[1000, 6000, 6000]",
        f"pack_learning={learning}",
        f"out={tmp_path}/pack/s{{seed}}",
    ]
    csv = tmp_path / "pack" / "s1" / "metrics.csv"
    # header + evaluations at 0, 500, 1000, 1500: run 0 (budget 1000) has finished by then
    signal_when(args, csv, 5, signal.SIGKILL)
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
    code, err = signal_when(args, tmp_path / "s4" / "metrics.csv", 3, signal.SIGTERM)
    assert code == 143, err
    assert err.count("received SIGTERM") == 2 and err.count("rerun the same command") == 2


def test_a_run_stopped_in_a_stacked_pack_resumes_alone(tmp_path):
    """A checkpoint does not depend on how its run learned: a run of a stacked pack, stopped
    by SIGTERM, resumes alone and ends as the same run trained alone from the start."""
    base = [*SMALL_RUN, *EVAL, "share=nps", "comm=true", "budget=6000"]
    pack = ["seed=[0, 1]", "pack_learning=stacked", f"out={tmp_path}/s{{seed}}"]
    csv = tmp_path / "s1" / "metrics.csv"
    code, err = signal_when([*base, *pack], csv, 3, signal.SIGTERM)
    assert code == 143, err
    assert len(read_metrics(csv)) < 7  # it stopped before the end
    info = json.loads((tmp_path / "s1" / "run_info.json").read_text())
    assert info["pack_learning"] == "stacked"
    res = run_train([*base, "seed=1", f"out={tmp_path}/s1"])
    assert res.returncode == 0 and "resuming" in res.stderr, res.stderr
    assert train_main([*base, "seed=1", f"out={tmp_path}/alone"]) == 0
    assert read_metrics(csv) == read_metrics(tmp_path / "alone" / "metrics.csv")


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
