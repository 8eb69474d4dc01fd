"""The ``sc2`` backend: SMAC's StarCraft2Env behind ficomm's protocol.

Neither SMAC nor StarCraft II can be installed here, so the adapter is driven by
``smac_standin.StarCraft2EnvStandIn`` (SMAC's API and 3s_vs_5z sizes, not StarCraft II),
and the missing-install errors are checked by hiding or faking the ``smac`` package.
"""

from __future__ import annotations

import functools
import json
import sys
import types

import numpy as np
import pytest
from smac_standin import StarCraft2EnvStandIn

from ficomm.envs import ConfigError, make_env
from ficomm.envs.sc2 import SC2Env

FACTORY = f"{StarCraft2EnvStandIn.__module__}:{StarCraft2EnvStandIn.__name__}"


def random_valid(avail: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (rng.random(avail.shape) * avail).argmax(-1)


def test_sizes_shapes_and_masks_follow_smac():
    env = make_env("3s_vs_5z", "sc2", seed=3, env_factory=StarCraft2EnvStandIn)
    assert env.backend == "sc2"
    i = env.info
    assert (i.n_agents, i.n_actions, i.obs_size, i.state_size, i.episode_limit) == (
        3,
        11,
        48,
        68,
        250,
    )
    assert i.has_win
    s = env.reset()
    assert s.obs.shape == (3, 48) and s.obs.dtype == np.float32
    assert s.state.shape == (68,) and s.state.dtype == np.float32
    assert s.avail.dtype == bool
    np.testing.assert_array_equal(s.avail, np.array(env._env.get_avail_actions(), bool))
    assert (s.reward, s.terminated, s.truncated) == (0.0, False, False)
    assert env._env._seed == 3 and env._env.continuing_episode is True


def test_episodes_report_win_loss_and_team_reward():
    rng = np.random.default_rng(0)
    env = SC2Env(seed=0, env_factory=StarCraft2EnvStandIn)
    outcomes = set()
    for _ in range(30):
        s = env.reset()
        total, steps = 0.0, 0
        while not (s.terminated or s.truncated):
            s = env.step(random_valid(s.avail, rng))
            assert isinstance(s.reward, float)
            total += s.reward
            steps += 1
        assert s.terminated and not s.truncated  # the stand-in's fights end well before 250
        assert s.info["won"] == (s.info["dead_enemies"] == 5 and s.info["dead_allies"] < 3)
        if not s.info["won"]:
            assert s.info["dead_allies"] == 3
        # a dead agent may only no-op, as in SMAC
        dead = np.array(env._env.ally_health) <= 0
        assert (s.avail[dead] == np.eye(11, dtype=bool)[0]).all()
        outcomes.add(s.info["won"])
    assert outcomes == {True, False}
    assert env.get_stats()["battles_game"] == 30


def test_time_limit_is_truncation_not_termination():
    env = SC2Env(seed=1, env_factory=StarCraft2EnvStandIn, episode_limit=4)
    s = env.reset()
    for _ in range(4):
        assert not (s.terminated or s.truncated)
        s = env.step(np.where(s.avail[:, 1], 1, 0))  # stop, or no-op once dead: no kills

    assert s.truncated and not s.terminated and not s.info["won"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.where(s.avail[:, 1], 1, 0))


def test_unavailable_action_raises_before_reaching_smac():
    env = SC2Env(seed=2, env_factory=StarCraft2EnvStandIn)
    s = env.reset()
    agent, action = np.argwhere(~s.avail)[0]
    actions = np.ones(3, np.int64)
    actions[agent] = action
    with pytest.raises(ValueError, match=f"action {action} of agent {agent} is not available"):
        env.step(actions)
    assert env._env.steps_taken == 0
    # the stand-in really asserts, as SMAC does, so the check above is what protects it
    with pytest.raises(AssertionError, match="cannot perform action"):
        env._env.step(actions.tolist())
    with pytest.raises(ValueError, match="integers"):
        env.step(np.ones(3) * 1.0)
    with pytest.raises(ValueError):
        env.step(np.ones(2, np.int64))


def test_factory_as_import_string_and_seed_handling():
    env = make_env("3s_vs_5z", "sc2", seed=5, env_factory=FACTORY)
    assert isinstance(env._env, StarCraft2EnvStandIn)
    s = env.reset(seed=9)  # before launch: the seed reaches the game
    first = env._env
    assert first._seed == 9 and first.launched
    rng = np.random.default_rng(9)
    while not (s.terminated or s.truncated):
        s = env.step(random_valid(s.avail, rng))
    with pytest.warns(UserWarning, match="seeded when it launched"):
        env.reset(seed=10)  # after launch: cannot reach it, warned once
    assert env._env is first and first._seed == 9
    env.close()
    assert first.closed


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"env_factory": "no_such_module_xyz:Env"}, "env_args.env_factory"),
        ({"env_factory": 42}, "env_args.env_factory"),
        ({"env_factory": StarCraft2EnvStandIn, "continuing_episode": False}, "continuing_episode"),
        ({"env_factory": StarCraft2EnvStandIn, "map_name": "8m"}, "env_args.map_name"),
    ],
)
def test_bad_env_args_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        SC2Env(**kwargs)


def test_without_smac_the_error_says_what_to_install_and_never_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "smac", None)  # import smac -> ImportError
    with pytest.raises(ConfigError) as err:
        make_env("3s_vs_5z", "sc2", seed=0)
    msg = str(err.value)
    assert "pip install git+https://github.com/oxwhirl/smac.git" in msg
    assert "SC2PATH" in msg and "StarCraftII" in msg and "SMAC_Maps" in msg
    assert "4.10" in msg and "backend" in msg


def test_pypi_smac3_is_recognised(monkeypatch):
    monkeypatch.setitem(sys.modules, "smac", types.ModuleType("smac"))  # SMAC3: no smac.env
    monkeypatch.setitem(sys.modules, "smac.env", None)
    with pytest.raises(ConfigError, match="not oxwhirl/smac"):
        make_env("3s_vs_5z", "sc2")


def test_missing_game_or_maps_names_sc2path(monkeypatch, tmp_path):
    smac = types.ModuleType("smac")
    smac_env = types.ModuleType("smac.env")
    smac_env.StarCraft2Env = StarCraft2EnvStandIn
    smac.env = smac_env
    monkeypatch.setitem(sys.modules, "smac", smac)
    monkeypatch.setitem(sys.modules, "smac.env", smac_env)
    monkeypatch.setenv("SC2PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="cannot find the StarCraft II game") as err:
        make_env("3s_vs_5z", "sc2")
    assert "SC2PATH" in str(err.value)
    (tmp_path / "Versions").mkdir()
    with pytest.raises(ConfigError, match="SMAC_Maps"):
        make_env("3s_vs_5z", "sc2")
    maps = tmp_path / "Maps" / "SMAC_Maps"
    maps.mkdir(parents=True)
    (maps / "3s_vs_5z.SC2Map").write_bytes(b"")
    env = make_env("3s_vs_5z", "sc2", seed=0)  # found: SMAC's class (faked here) is used
    assert isinstance(env._env, StarCraft2EnvStandIn) and env.backend == "sc2"


def test_sc2_has_no_vector_form():
    from ficomm.envs import make_vector_env

    with pytest.raises(ConfigError, match="no vectorised form"):
        make_vector_env("3s_vs_5z", "sc2", 4, env_factory=StarCraft2EnvStandIn)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("import pysc2_not_installed_xyz\n", "SMAC is installed but does not import"),
        ("raise TypeError('Descriptors cannot be created directly.')\n", "protobuf<3.21"),
    ],
    ids=["missing-dependency", "protobuf-too-new"],
)
def test_broken_smac_install_is_explained(monkeypatch, tmp_path, body, expected):
    package = tmp_path / "smac" / "env"
    package.mkdir(parents=True)
    (tmp_path / "smac" / "__init__.py").write_text("")
    (package / "__init__.py").write_text(body)
    for name in ("smac", "smac.env"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=expected):
        make_env("3s_vs_5z", "sc2")
    for name in ("smac", "smac.env"):  # leave no fake SMAC behind for other tests
        sys.modules.pop(name, None)


def stop_or_noop(avail: np.ndarray) -> np.ndarray:
    return np.where(avail[:, 1], 1, 0)


def test_the_standin_reproduces_smacs_crash_answer_and_inflated_reward_scale():
    # what the adapter has to cope with, as SMAC's code does it (no adapter involved)
    raw = StarCraft2EnvStandIn(seed=0)
    raw.reset()
    assert raw.max_reward == 30.0 and raw.launches == 1
    raw.crash_next_step = True
    assert raw.step([1, 1, 1]) == (0, True, {})
    assert raw.force_restarts == 1 and raw.launches == 2
    raw.reset()  # the first episode never ended: SMAC launches yet another game
    assert raw.launches == 3 and raw.max_reward == 50.0


def test_a_crash_mid_episode_is_an_interruption_not_a_loss():
    env = SC2Env(seed=0, env_factory=StarCraft2EnvStandIn)
    s = env.reset()
    s = env.step(stop_or_noop(s.avail))
    first = env._env
    first.crash_next_step = True
    with pytest.warns(RuntimeWarning, match="interrupted.*interruptions so far: 1"):
        cut = env.step(stop_or_noop(s.avail))
    assert cut.truncated and not cut.terminated
    assert cut.info["interrupted"] and not cut.info["won"] and cut.reward == 0.0
    # the last observation is repeated: SMAC's units now belong to the relaunched game
    np.testing.assert_array_equal(cut.obs, s.obs)
    np.testing.assert_array_equal(cut.avail, s.avail)
    assert env.interruptions == 1 and env.rebuilds == 1
    with pytest.raises(RuntimeError, match="reset"):
        env.step(stop_or_noop(cut.avail))
    stats = env.get_stats()
    assert (stats["interruptions"], stats["rebuilds"], stats["restarts"]) == (1, 1, 1)
    assert stats["battles_game"] == 0  # the interrupted episode is not a battle SMAC counted


def test_ordinary_steps_say_they_were_not_interrupted():
    env = SC2Env(seed=4, env_factory=StarCraft2EnvStandIn)
    s = env.reset()
    assert s.info == {"won": False, "interrupted": False}
    rng = np.random.default_rng(4)
    while not (s.terminated or s.truncated):
        s = env.step(random_valid(s.avail, rng))
        assert s.info["interrupted"] is False
    assert env.interruptions == 0 and env.rebuilds == 0


def test_a_relaunched_game_is_replaced_by_a_fresh_env_with_a_fresh_reward_scale():
    env = SC2Env(seed=7, env_factory=StarCraft2EnvStandIn)
    s = env.reset()
    first = env._env
    first.crash_next_step = True  # in the first episode, where SMAC's scale would inflate
    with pytest.warns(RuntimeWarning):
        env.step(stop_or_noop(s.avail))
    assert first.closed and env._env is not first
    fresh = env._env
    assert isinstance(fresh, StarCraft2EnvStandIn) and fresh._seed == 7
    assert not fresh.closed and fresh.force_restarts == 0
    s = env.reset()
    assert fresh.launches == 1 and fresh.max_reward == 30.0  # one launch's scale, not 50
    # kills are paid on a fresh env's scale: 1 enemy health point = 20 / 30
    rewards = []
    while not (s.terminated or s.truncated):
        attack = np.flatnonzero(s.avail[0, 6:])
        acts = stop_or_noop(s.avail)
        if attack.size:
            acts[0] = 6 + attack[0]
        s = env.step(acts)
        rewards.append(s.reward)
    kill_rewards = {round(r, 9) for r in rewards if 0 < r < 1}
    assert kill_rewards <= {round(20 / 30, 9), round(40 / 30, 9), round(60 / 30, 9)}
    assert env.get_stats()["restarts"] == 1  # the replaced env's relaunch is still counted


def test_a_crash_during_reset_rebuilds_and_resets_again():
    env = SC2Env(seed=1, env_factory=StarCraft2EnvStandIn)
    first = env._env
    first.crash_resets = 1
    with pytest.warns(RuntimeWarning, match="crashed while the episode started"):
        s = env.reset()
    assert first.closed and env._env is not first and env.rebuilds == 1
    assert env._env.launches == 1 and env._env.max_reward == 30.0
    assert not (s.terminated or s.truncated) and s.obs.shape == (3, 48)
    env.step(stop_or_noop(s.avail))  # the episode runs on the fresh env


def test_a_game_that_crashes_on_every_reset_stops_the_run():
    always = functools.partial(StarCraft2EnvStandIn, crash_resets=10**6)
    env = SC2Env(seed=1, env_factory=always)
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="3 resets in a row"):
        env.reset()
    assert env.rebuilds == 3


def test_run_facts_name_the_game_build_map_and_env_class(monkeypatch, tmp_path):
    monkeypatch.setenv("SC2PATH", str(tmp_path))
    env = SC2Env(seed=0, env_factory=StarCraft2EnvStandIn)
    facts = env.run_facts()
    assert facts["sc2_build"] is None and facts["sc2_builds_installed"] == []
    for build in (69232, 75689):
        (tmp_path / "Versions" / f"Base{build}").mkdir(parents=True)
    facts = env.run_facts()
    assert facts["map"] == "3s_vs_5z" and facts["backend"] == "sc2"
    # pysc2 starts the newest installed build unless game_version names one
    assert (facts["sc2_build"], facts["sc2_version"]) == (75689, "4.10.0")
    assert facts["sc2_builds_installed"] == [69232, 75689]
    assert facts["env_class"] == f"{FACTORY.replace(':', '.')}"
    assert {"smac_version", "smac_commit", "smac_source", "pysc2_version"} <= facts.keys()
    json.dumps(facts)  # goes to run_info.json and the W&B config as it is
    old = SC2Env(seed=0, env_factory=StarCraft2EnvStandIn, game_version="4.6.2").run_facts()
    assert (old["sc2_build"], old["sc2_version"], old["sc2_game_version_arg"]) == (
        69232,
        "4.6.2",
        "4.6.2",
    )


def test_close_shuts_the_current_game_once():
    env = SC2Env(seed=0, env_factory=StarCraft2EnvStandIn)
    s = env.reset()
    env._env.crash_next_step = True
    with pytest.warns(RuntimeWarning):
        env.step(stop_or_noop(s.avail))
    current = env._env
    env.close()
    assert current.closed
    current.closed = False
    env.close()  # a second close (train.py's, after an atexit or error path) does nothing
    assert not current.closed


def test_abandoning_the_first_episode_starts_a_fresh_env():
    env = SC2Env(seed=3, env_factory=StarCraft2EnvStandIn)
    env.reset()
    first = env._env
    env.reset()  # SMAC would launch a second game here and add its health to the scale
    assert first.closed and env._env is not first and env.rebuilds == 1
    assert env._env.launches == 1 and env._env.max_reward == 30.0
    s, rng = env.reset(), np.random.default_rng(3)
    while not (s.terminated or s.truncated):
        s = env.step(random_valid(s.avail, rng))
    current = env._env
    env.reset()  # once an episode has ended SMAC restarts in the same game: nothing to rebuild
    assert env._env is current and env.rebuilds == 2 and current.launches == 1


def test_sc2_yaml_pins_the_smac_commit_the_adapter_names():
    from pathlib import Path

    import yaml

    from ficomm.envs.sc2 import SMAC_COMMIT, SMAC_GIT

    root = Path(__file__).resolve().parents[2]
    deps = yaml.safe_load((root / "envs" / "sc2.yaml").read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    (smac,) = [line for line in pip if line.startswith("smac @")]
    assert smac == f"smac @ {SMAC_GIT}" and len(SMAC_COMMIT) == 40
    int(SMAC_COMMIT, 16)  # a full commit id, not a branch name
    env = SC2Env(seed=0, env_factory=StarCraft2EnvStandIn)
    assert env.run_facts()["smac_commit_pinned"] == SMAC_COMMIT


def test_pettingzoo_sees_an_interruption_as_truncation():
    pytest.importorskip("pettingzoo")
    from ficomm.envs.pettingzoo_api import PettingZooParallelEnv

    pz = PettingZooParallelEnv(SC2Env(seed=0, env_factory=StarCraft2EnvStandIn))
    _, infos = pz.reset()
    pz.env._env.crash_next_step = True
    acts = {a: int(np.where(i["action_mask"][1], 1, 0)) for a, i in infos.items()}
    with pytest.warns(RuntimeWarning, match="interrupted"):
        _, rewards, terminations, truncations, _ = pz.step(acts)
    assert all(truncations.values()) and not any(terminations.values())
    assert set(rewards.values()) == {0.0} and pz.agents == []


class _CrashesOnceAtStep:
    """The stand-in whose game crashes once, at step `at` of its first episode."""

    def __init__(self, at: int):
        self.at, self.crashed = at, False

    def __call__(self, **kwargs):
        env = StarCraft2EnvStandIn(**kwargs)
        step, outer = env.step, self

        def crashing_step(actions):
            if not outer.crashed and env._t == outer.at - 1:
                outer.crashed = True
                env.crash_next_step = True
            return step(actions)

        env.step = crashing_step
        return env


def _policy(env):
    import torch

    from ficomm.methods import layout_for
    from ficomm.nets import AgentNets
    from ficomm.rollout import Policy

    torch.manual_seed(0)
    i = env.info
    return Policy(AgentNets(layout_for("ps", True), i.n_agents, i.obs_size, i.n_actions, 8))


def test_evaluation_replays_an_interrupted_episode_instead_of_counting_a_loss():
    from ficomm.rollout import evaluate

    crash = _CrashesOnceAtStep(at=3)
    env = SC2Env(seed=0, env_factory=crash)
    clean = SC2Env(seed=0, env_factory=StarCraft2EnvStandIn)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        res = evaluate(env, _policy(env), episodes=3, seed=10)
    assert crash.crashed and res["interrupted"].tolist() == [1, 0, 0]
    ref = evaluate(clean, _policy(clean), episodes=3, seed=10)
    # The replayed episode is the same game as an uninterrupted one: no loss counted for it.
    for key in ("return", "length", "won"):
        np.testing.assert_array_equal(res[key], ref[key])
    assert ref["interrupted"].tolist() == [0, 0, 0]


def test_a_training_episode_cut_by_a_crash_is_not_stored_as_terminal():
    from ficomm.buffer import Episode
    from ficomm.rollout import EpsilonSchedule, collect_episode

    env = SC2Env(seed=0, env_factory=_CrashesOnceAtStep(at=4))
    ep = Episode.empty(env.info)
    eps = EpsilonSchedule(1.0, 0.05, 1000)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        collect_episode(env, _policy(env), ep, eps, np.random.default_rng(0), 5, True)
    assert ep.length == 4 and not ep.terminal[: ep.length].any()  # bootstraps past the cut
