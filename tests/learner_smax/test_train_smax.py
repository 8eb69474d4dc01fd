"""The learner on 3s_vs_5z: all four methods train through ``ficomm.train`` on SMAX, and
through the ``sc2`` adapter on the asserting SMAC stand-in (not StarCraft II); asking for sc2
without SMAC stops with an error instead of falling back to SMAX."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "envs"))  # the SMAC stand-in
from smac_standin import StarCraft2EnvStandIn  # noqa: E402

from ficomm.train import main as train_main  # noqa: E402
from ficomm.wandb_files import read_offline_run  # noqa: E402

STANDIN = f"{StarCraft2EnvStandIn.__module__}:{StarCraft2EnvStandIn.__name__}"
METHODS = [("nps", False), ("nps", True), ("ps", False), ("ps", True)]
LABELS = {
    ("ps", False): "PS+IQL",
    ("ps", True): "PS+IQL+COMM",
    ("nps", False): "NPS+IQL",
    ("nps", True): "NPS+IQL+COMM",
}
H, MSG_HIDDEN, MSG = 64, 64, 10


def spec_width(share: str, comm: bool, obs: int, actions: int, n: int) -> int:
    """The spec's input rule: obs + last action, + agent id (PS), + others' messages (COMM),
    + own message (NPS+COMM)."""
    width = obs + actions
    if share == "ps":
        width += n + ((n - 1) * MSG if comm else 0)
    elif comm:
        width += (n - 1) * MSG + MSG
    return width


def spec_params(width: int, obs: int, actions: int, comm: bool) -> int:
    """Parameters of one owner: Linear(width, H), GRUCell(H, H), Linear(H, A) [+ message net
    Linear(obs, 64), Linear(64, 64), Linear(64, 10)]."""
    q = width * H + H + 6 * H * H + 6 * H + H * actions + actions
    msg = (
        obs * MSG_HIDDEN
        + MSG_HIDDEN
        + MSG_HIDDEN * MSG_HIDDEN
        + MSG_HIDDEN
        + MSG_HIDDEN * MSG
        + MSG
    )
    return q + (msg if comm else 0)


def run(out: Path, share: str, comm: bool, *args: str, wandb: str = "disabled") -> int:
    return train_main(
        [
            f"out={out}",
            "env=3s_vs_5z",
            f"share={share}",
            f"comm={str(comm).lower()}",
            f"hidden={H}",
            "seed=0",
            f"wandb_mode={wandb}",
            *args,
        ]
    )


def read_run(out: Path) -> tuple[dict, dict, list[dict]]:
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    info = json.loads((out / "run_info.json").read_text())
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return cfg, info, rows


@pytest.mark.slow
@pytest.mark.smax
@pytest.mark.skipif(find_spec("jaxmarl") is None, reason="needs jaxmarl (ficomm[smax])")
def test_four_methods_train_on_smax(tmp_path):
    budget = 2000
    for share, comm in METHODS:
        out = tmp_path / f"{share}-{comm}"
        args = ("backend=smax", f"budget={budget}", "eval_interval=1000", "eval_episodes=4")
        assert run(out, share, comm, *args) == 0
        cfg, info, rows = read_run(out)
        assert cfg["backend"] == "smax" and info["backend"] == "smax"
        assert info["method"] == LABELS[(share, comm)]
        assert (info["n_agents"], info["n_actions"], info["obs_size"]) == (3, 10, 101)
        assert (info["state_size"], info["episode_limit"], info["has_win"]) == (96, 250, True)
        width = spec_width(share, comm, 101, 10, 3)
        assert info["q_input_width"] == width
        assert info["n_params"] == spec_params(width, 101, 10, comm)  # per owner
        assert info["n_owners"] == (1 if share == "ps" else 3)
        assert len(rows) == 3 and int(rows[0]["env_steps"]) == 0
        assert 1000 <= int(rows[1]["env_steps"]) < budget  # the evaluation after 1000 steps
        assert int(rows[2]["env_steps"]) >= budget  # the final policy's, at the budget
        assert (out / "policy.pt").is_file()
        if comm:  # SMAX runs with messages test them too (auto: the final evaluation)
            assert rows[2]["intervene_swap_action_change"] != ""
            assert rows[2]["signal_sight_mi"] == ""  # SMAX names no sight columns
        for r in rows:
            assert 0.0 <= float(r["eval_win_rate"]) <= 1.0  # SMAX reports wins
            assert 0.0 <= float(r["eval_return_mean"]) <= 2.0 + 1e-5  # SMAX's reward scale
        assert float(rows[1]["train_loss"]) >= 0.0


@pytest.mark.filterwarnings("ignore:SC2Env.reset:UserWarning")  # per-episode seeds, expected
def test_learner_never_sends_an_invalid_action_to_the_asserting_standin(tmp_path):
    """The stand-in asserts on an unavailable action as SMAC does, and the adapter raises
    ValueError first: any invalid choice by the learner would end the run with an error."""
    for share, comm in METHODS:
        out = tmp_path / f"{share}-{comm}"
        args = ("backend=sc2", f"env_args.env_factory={STANDIN}", "budget=800")
        wandb = "offline" if share == "nps" and comm else "disabled"  # one run checks W&B
        assert (
            run(out, share, comm, *args, "eval_interval=400", "eval_episodes=2", wandb=wandb) == 0
        )
        cfg, info, rows = read_run(out)
        assert cfg["backend"] == "sc2" and cfg["env_args"]["env_factory"] == STANDIN
        if wandb == "offline":
            (record,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
            tags = set(read_offline_run(record)["tags"])
            assert {"env:3s_vs_5z", "backend:sc2"} <= tags
        assert (info["backend"], info["obs_size"], info["n_actions"]) == ("sc2", 48, 11)
        # on SMAC's sizes the widths and parameter counts are the spec's tables (H 64)
        width = {("nps", False): 59, ("nps", True): 89, ("ps", False): 62, ("ps", True): 82}
        params = {
            ("nps", False): 29_515,
            ("nps", True): 39_381,
            ("ps", False): 29_707,
            ("ps", True): 38_933,
        }
        assert info["q_input_width"] == width[(share, comm)] == spec_width(share, comm, 48, 11, 3)
        assert info["n_params"] == params[(share, comm)]
        assert int(rows[-1]["env_steps"]) >= 400


@pytest.mark.filterwarnings("ignore:SC2Env.reset:UserWarning")
def test_a_sc2_run_records_the_game_build_and_closes_every_game(tmp_path):
    """`ficomm train` on the sc2 adapter (stand-in) writes what the adapter reports about the
    game (build, map, env class, the pinned SMAC commit) into run_info.json and the W&B config,
    and closes every game it started (training and evaluation), so no game process is left."""
    StarCraft2EnvStandIn.created.clear()
    out = tmp_path / "run"
    args = ("backend=sc2", f"env_args.env_factory={STANDIN}", "budget=800", "eval_interval=400")
    assert run(out, "nps", True, *args, "eval_episodes=2", wandb="offline") == 0
    facts = read_run(out)[1]["env_facts"]
    assert facts["map"] == "3s_vs_5z" and facts["env_class"] == STANDIN.replace(":", ".")
    assert "sc2_build" in facts and facts["smac_commit_pinned"]
    (record,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    assert read_offline_run(record)["config"]["env_facts"]["env_class"] == facts["env_class"]
    games = StarCraft2EnvStandIn.created
    assert len(games) >= 2 and all(game.closed for game in games)  # training + evaluation


def test_sc2_without_smac_stops_and_never_falls_back(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['smac'] = None  # as if oxwhirl/smac were not installed\n"
        "from ficomm.train import main\n"
        f"rc = main(['out={tmp_path / 'run'}', 'env=3s_vs_5z', 'wandb_mode=disabled'])\n"
        "print(rc, 'ficomm.envs.smax' in sys.modules, 'jax' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.stdout.split() == ["2", "False", "False"], proc.stdout + proc.stderr
    assert "backend: 'sc2' needs StarCraft II and SMAC" in proc.stderr
    assert "pip install git+https://github.com/oxwhirl/smac.git" in proc.stderr
    assert "SC2PATH" in proc.stderr
    assert not (tmp_path / "run" / "metrics.csv").exists()


def _metrics_without_wall_clock(out: Path) -> list[dict]:
    rows = read_run(out)[2]
    for row in rows:
        row.pop("wall_time"), row.pop("env_steps_per_sec")
    return rows


@pytest.mark.slow
@pytest.mark.smax
@pytest.mark.skipif(find_spec("jaxmarl") is None, reason="needs jaxmarl (ficomm[smax])")
@pytest.mark.parametrize(
    "share, comm, learning",
    [("nps", True, "per_run"), ("ps", False, "per_run"), ("nps", True, "stacked")],
)
def test_packed_smax_runs_equal_the_same_runs_alone(tmp_path, share, comm, learning):
    """A pack steps its runs' SMAX episodes in one vmapped call; each run still plays the
    episodes and takes the evaluations it would alone (budgets differ: run 0 stops first).

    Losses agree to float32 tolerance, not bit for bit: XLA compiles SMAX's vmapped step once
    per batch size, and a batch of 3 and a batch of 1 round some observations one float32 ulp
    apart (6e-8), which the learner carries into its losses (relative 1e-6 here)."""
    common = ("backend=smax", "eval_interval=500", "eval_episodes=3", "batch_size=8")
    pack = (*common, "seed=[0, 1, 2]", "budget=[600, 1200, 1200]", f"pack_learning={learning}")
    assert run(tmp_path / "pack" / "s{seed}", share, comm, *pack) == 0
    for seed, budget in ((0, 600), (1, 1200), (2, 1200)):
        alone = tmp_path / "alone" / f"s{seed}"
        assert run(alone, share, comm, *common, f"seed={seed}", f"budget={budget}") == 0
        packed = _metrics_without_wall_clock(tmp_path / "pack" / f"s{seed}")
        single = _metrics_without_wall_clock(alone)
        assert len(packed) == len(single) >= 2, f"seed {seed}"
        for p_row, s_row in zip(packed, single, strict=True):
            p_loss, s_loss = p_row.pop("train_loss"), s_row.pop("train_loss")
            assert p_row == s_row, f"seed {seed}"  # steps, episodes, evaluations: exact
            if s_loss:
                assert float(p_loss) == pytest.approx(float(s_loss), rel=1e-4), f"seed {seed}"


@pytest.mark.filterwarnings("ignore:SC2Env.reset:UserWarning")
def test_packed_sc2_runs_one_game_each_equal_the_same_runs_alone(tmp_path):
    """Without a vectorised form (real StarCraft II) a pack drives one game per run."""
    common = (
        "backend=sc2",
        f"env_args.env_factory={STANDIN}",
        "eval_interval=400",
        "eval_episodes=2",
        "batch_size=4",
    )
    assert (
        run(tmp_path / "pack" / "s{seed}", "nps", True, *common, "seed=[0, 1]", "budget=[400, 800]")
        == 0
    )
    for seed, budget in ((0, 400), (1, 800)):
        alone = tmp_path / "alone" / f"s{seed}"
        assert run(alone, "nps", True, *common, f"seed={seed}", f"budget={budget}") == 0
        assert _metrics_without_wall_clock(tmp_path / "pack" / f"s{seed}") == (
            _metrics_without_wall_clock(alone)
        )
