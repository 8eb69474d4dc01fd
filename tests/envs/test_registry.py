"""An environment registered from this file alone goes through `ficomm train`, aggregation and
figures: the registry entry is the one place an environment has to be described."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pytest

from ficomm import envs
from ficomm.analysis import figures
from ficomm.analysis.aggregate import aggregate_runs, env_title, primary_metric
from ficomm.envs.base import EnvInfo, MultiAgentEnv, Step


class Corridor(MultiAgentEnv):
    """Two agents on a corridor of 3 cells; the team earns 1 each step both stand on cell 2."""

    backend = "toy"

    def __init__(self, seed=None, length=6):
        self.info = EnvInfo(
            n_agents=2, n_actions=3, obs_size=3, state_size=6, episode_limit=length, has_win=False
        )
        self.rng = np.random.default_rng(seed)
        self.pos = np.zeros(2, np.int64)
        self.t = 0

    def _step(self, reward=0.0, truncated=False):
        obs = np.eye(3, dtype=np.float32)[self.pos]
        return Step(obs, obs.ravel(), np.ones((2, 3), bool), reward, False, truncated, {})

    def reset(self, seed=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.pos = self.rng.integers(0, 3, size=2)
        self.t = 0
        return self._step()

    def step(self, actions):
        self.pos = np.clip(self.pos + np.asarray(actions) - 1, 0, 2)
        self.t += 1
        reward = float((self.pos == 2).all())
        return self._step(reward, truncated=self.t >= self.info.episode_limit)


@pytest.fixture
def corridor():
    spec = envs.register_env(
        envs.EnvSpec(
            name="corridor",
            title="Corridor 3",
            backends={"toy": envs.BackendSpec(title="toy", single=Corridor, max_return=6.0)},
            default_backend="toy",
            default_budget=120,
            metric="eval_return_mean",
            metric_label="team return",
        )
    )
    yield spec
    envs._ENVS.pop("corridor")
    envs.ENV_NAMES.remove("corridor")


def test_registered_env_trains_aggregates_and_draws(corridor, tmp_path):
    from ficomm.train import main as train_main

    runs = tmp_path / "runs"
    for share in ("ps", "nps"):
        for seed in (0, 1):
            out = runs / f"{share}_s{seed}"
            rc = train_main(
                [
                    "env=corridor",  # backend and budget come from the registry entry
                    f"share={share}",
                    "comm=true",
                    "hidden=64",
                    f"seed={seed}",
                    "eval_interval=30",
                    "eval_episodes=2",
                    "batch_size=4",
                    "wandb_mode=disabled",
                    f"out={out}",
                ]
            )
            assert rc == 0
            info = json.loads((out / "run_info.json").read_text())
            assert info["backend"] == "toy" and info["n_agents"] == 2
    df = aggregate_runs([runs])
    assert set(df["env"]) == {"corridor"} and set(df["backend"]) == {"toy"}
    assert df.groupby("run_dir")["env_steps"].max().ge(120 - 30).all()
    assert primary_metric("corridor") == ("eval_return_mean", "team return")
    assert env_title("corridor", "toy") == "Corridor 3 (toy backend)"
    manifest = figures.write_figures(df, tmp_path / "fig", last_k=2, n_boot=200, seed=0)
    kinds = {spec["kind"] for spec in manifest["figures"]}
    assert {"methods", "seeds"} <= kinds, manifest
    pngs = [f for spec in manifest["figures"] for f in spec["files"] if f.endswith(".png")]
    for png in pngs:
        image = mpimg.imread(tmp_path / "fig" / png)
        assert image.shape[0] > 100 and image.std() > 0  # a drawn figure, not a blank canvas


def test_unknown_env_and_bad_default_backend_are_refused():
    with pytest.raises(envs.ConfigError, match="unknown environment 'pong'"):
        envs.env_spec("pong")
    with pytest.raises(envs.ConfigError, match="default_backend"):
        envs.register_env(
            envs.EnvSpec(
                name="x",
                title="x",
                backends={"a": envs.BackendSpec(title="a", single=Corridor)},
                default_backend="b",
                default_budget=1,
                metric="eval_return_mean",
                metric_label="r",
            )
        )


@pytest.mark.parametrize(
    "name, grid, n_agents, n_preys",
    [
        ("predator_prey", (7, 7), 4, 2),
        ("predator_prey_8", (10, 10), 8, 4),
        ("predator_prey_16", (14, 14), 16, 8),
    ],
)
def test_predator_prey_team_sizes_are_valid_entries(name, grid, n_agents, n_preys):
    from ficomm.envs.predator_prey import PAPER_DEFAULTS, make_geometry

    spec = envs.env_spec(name)
    geo = make_geometry(**envs.env_params(name))  # validates: everyone fits at reset
    assert (geo.rows, geo.cols, geo.n_agents, geo.n_preys) == (*grid, n_agents, n_preys)
    assert geo.view == (5, 5) and geo.prey_move_probs == PAPER_DEFAULTS["prey_move_probs"]
    assert geo.prey_capture_reward == PAPER_DEFAULTS["prey_capture_reward"]
    assert (geo.penalty, geo.step_cost, geo.max_steps) == (-0.75, -0.01, 100)
    assert spec.team_size == n_agents and spec.family_name == "predator_prey" and spec.basins
    assert spec.avoid_return == pytest.approx(n_agents * geo.max_steps * geo.step_cost)
    assert spec.basin_tol == pytest.approx(0.25 * n_agents)
    native = spec.backends["native"]
    assert native.max_return == n_preys * n_agents * geo.prey_capture_reward  # 40 for 4 and 2
    env = envs.make_vector_env(name, "native", 3, seed=0)
    assert env.info.n_agents == n_agents and env.info.state_size == 2 * n_agents + 3 * n_preys + 1
    step = env.reset()
    assert step.obs.shape == (3, n_agents, 28)
    # A team that does nothing: every agent pays the step cost each step (unless a prey walks
    # into a lone predator); the avoid level is the sum of those costs.
    single = envs.make_env(name, "native", seed=1)
    single.reset()
    total, done = 0.0, False
    while not done:
        s = single.step(np.full(n_agents, 4))
        total, done = total + s.reward, s.terminated or s.truncated
    assert total <= spec.avoid_return + 1e-9


def test_run_env_args_override_the_entry_and_bad_sizes_name_the_fields():
    env = envs.make_env("predator_prey_8", "native", seed=0, n_preys=2, penalty=-0.5)
    assert env.info.n_agents == 8 and env.info.state_size == 2 * 8 + 3 * 2 + 1
    assert envs.env_params("predator_prey_16", grid_shape=(20, 20))["grid_shape"] == (20, 20)
    with pytest.raises(envs.ConfigError, match=r"n_agents \+ n_preys: 16 \+ 8 .* 5x5 grid"):
        envs.make_env("predator_prey_16", "native", grid_shape=(5, 5))
    with pytest.raises(envs.ConfigError, match=r"n_agents \+ n_preys"):
        envs.make_vector_env("predator_prey_8", "native", 2, grid_shape=(4, 4))
    with pytest.raises(envs.ConfigError, match="basins=True needs avoid_return"):
        envs.register_env(
            envs.EnvSpec(
                name="y",
                title="y",
                backends={"a": envs.BackendSpec(title="a", single=Corridor)},
                default_backend="a",
                default_budget=1,
                metric="eval_return_mean",
                metric_label="r",
                basins=True,
            )
        )
