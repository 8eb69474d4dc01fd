"""PredatorPrey (single episode): settings, rules on hand-placed positions, observations,
seeding, bad input, the PettingZoo wrapper and the chasing policy. Equivalence with ma-gym
itself is in test_predator_prey_magym.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ficomm.envs import ConfigError, EnvInfo, make_env
from ficomm.envs.pettingzoo_api import PettingZooParallelEnv, parallel_env
from ficomm.envs.predator_prey import PAPER_DEFAULTS, PredatorPrey, chase_actions

STILL = {"prey_move_probs": (0, 0, 0, 0, 1)}  # prey never move: rules become deterministic
DOWN, LEFT, UP, RIGHT, NOOP = range(5)


def noop(env):
    return np.full(env.info.n_agents, NOOP)


def test_defaults_are_the_papers():
    env = PredatorPrey(seed=0)
    assert env.info == EnvInfo(
        n_agents=4, n_actions=5, obs_size=28, state_size=15, episode_limit=100, has_win=False
    )
    geo = env.geometry
    assert (geo.rows, geo.cols, geo.n_agents, geo.n_preys) == (7, 7, 4, 2)
    assert (geo.penalty, geo.step_cost, geo.prey_capture_reward) == (-0.75, -0.01, 5.0)
    assert geo.max_steps == 100 and geo.view == (5, 5)
    assert geo.prey_move_probs == (0.175, 0.175, 0.175, 0.175, 0.3)
    step = env.reset()
    assert step.obs.shape == (4, 28) and step.obs.dtype == np.float32
    assert step.state.shape == (15,) and step.state.dtype == np.float32
    assert step.avail.shape == (4, 5) and step.avail.all()
    assert (step.reward, step.terminated, step.truncated) == (0.0, False, False)
    assert ((step.obs >= 0) & (step.obs <= 1)).all()
    assert step.obs[:, -1].tolist() == [0.0] * 4
    assert env.backend == "native"


def test_observation_layout():
    env = PredatorPrey(seed=0, **STILL)
    step = env._place(agents=[(3, 3), (0, 0), (6, 6), (0, 6)], preys=[(3, 5), (1, 1)])
    obs = step.obs
    np.testing.assert_allclose(obs[0, :2], [0.5, 0.5])
    np.testing.assert_allclose(obs[2, :2], [1.0, 1.0])
    view = obs[:, 2:27].reshape(4, 5, 5)
    # agent 0 at (3,3): prey at offset (0,+2) and (-2,-2); the centre (flat 12) is itself
    assert view[0, 2, 4] == 1 and view[0, 0, 0] == 1 and view[0].sum() == 2
    # agent 1 at (0,0): prey (1,1) at offset (+1,+1); off-grid view cells stay 0
    assert view[1, 3, 3] == 1 and view[1].sum() == 1
    assert view[2].sum() == 0  # (6,6) sees nothing within 2 cells
    # state: predators' (row, col), then each prey's (row, col, alive), then time
    np.testing.assert_allclose(step.state[:2], [0.5, 0.5])
    np.testing.assert_allclose(step.state[8:14], [0.5, 5 / 6, 1, 1 / 6, 1 / 6, 1])
    assert step.state[-1] == 0
    step = env.step(noop(env))
    assert np.allclose(step.obs[:, -1], 0.01) and np.isclose(step.state[-1], 0.01)


def test_predators_move_in_index_order_and_are_blocked():
    env = PredatorPrey(seed=0, **STILL)
    env._place(agents=[(2, 2), (2, 3), (0, 0), (5, 5)], preys=[(5, 0), (4, 5)])
    # 0 moves left first, so 1 can take its old cell; 2 walks into the wall; 3 into a prey
    env.step(np.array([LEFT, LEFT, UP, UP]))
    assert env.positions()[0] == [(2, 1), (2, 2), (0, 0), (5, 5)]
    # 0 moves right into 1's cell before 1 leaves it: blocked
    env.step(np.array([RIGHT, RIGHT, LEFT, NOOP]))
    assert env.positions()[0] == [(2, 1), (2, 3), (0, 0), (5, 5)]


def test_penalty_capture_and_termination():
    env = PredatorPrey(seed=0, **STILL)
    env._place(agents=[(2, 2), (0, 6), (6, 0), (6, 6)], preys=[(2, 3), (4, 4)])
    step = env.step(noop(env))
    # one predator next to prey 0: every agent gets step cost + penalty, the prey stays
    assert step.info["agent_rewards"].tolist() == [-0.01 + -0.75] * 4
    assert step.reward == sum([-0.01 + -0.75] * 4)
    assert step.info["captures"] == 0 and env.positions()[1] == [(2, 3), (4, 4)]
    # two next to prey 0: +5 each and it leaves grid, view and state
    env._place(agents=[(2, 2), (1, 3), (6, 0), (6, 6)], preys=[(2, 3), (4, 4)])
    step = env.step(noop(env))
    assert step.info["agent_rewards"].tolist() == [-0.01 + 5.0] * 4
    assert step.info["captures"] == 1 and not (step.terminated or step.truncated)
    assert env.positions()[1] == [None, (4, 4)]
    assert step.obs[0, 2 + 13] == 0 and step.obs[1, 2 + 17] == 0  # where prey 0 was
    assert step.state[8:11].tolist() == [0, 0, 0]
    # a penalty and a capture in one step add up in prey order
    env._place(agents=[(2, 2), (4, 3), (4, 5), (6, 6)], preys=[(2, 3), (4, 4)])
    step = env.step(noop(env))
    assert step.info["agent_rewards"].tolist() == [(-0.01 + -0.75) + 5.0] * 4
    # capturing the last prey terminates, even on the last allowed step
    env = PredatorPrey(seed=0, n_preys=1, max_steps=1, **STILL)
    env._place(agents=[(2, 2), (2, 4), (6, 0), (6, 6)], preys=[(2, 3)])
    step = env.step(noop(env))
    assert step.terminated and not step.truncated and step.info["captures"] == 1
    with pytest.raises(RuntimeError, match="reset"):
        env.step(noop(env))


def test_truncation_is_not_termination():
    env = PredatorPrey(seed=0, max_steps=3, **STILL)
    env._place(agents=[(0, 0), (0, 6), (6, 0), (6, 6)], preys=[(3, 3), (3, 5)])
    flags = [(s.terminated, s.truncated) for s in (env.step(noop(env)) for _ in range(3))]
    assert flags == [(False, False), (False, False), (False, True)]


def test_prey_avoid_predators_and_walls():
    always_down = {"prey_move_probs": (1, 0, 0, 0, 0)}
    env = PredatorPrey(seed=0, **always_down)
    env._place(agents=[(5, 3), (0, 0), (0, 6), (6, 6)], preys=[(3, 3), (6, 1)])
    env.step(noop(env))
    # prey 0 would land next to the predator at (5,3): all 5 draws rejected, it stays;
    # prey 1 is at the bottom: the off-grid move is accepted and then ignored
    assert env.positions()[1] == [(3, 3), (6, 1)]
    env._place(agents=[(0, 3), (0, 0), (0, 6), (6, 6)], preys=[(3, 3), (6, 1)])
    env.step(noop(env))
    assert env.positions()[1] == [(4, 3), (6, 1)]


def test_reset_placement_follows_magym():
    env = PredatorPrey(seed=3)
    rows, cols = set(), set()
    for _ in range(300):
        env.reset()
        agents, preys = env.positions()
        cells = agents + preys
        assert len(set(cells)) == 6
        rows |= {r for r, _ in cells}
        cols |= {c for _, c in cells}
        for pr, pc in preys:
            assert all(abs(pr - r) + abs(pc - c) > 1 for r, c in agents)
    # randint(0, grid - 1) excludes the last row and column
    assert rows == cols == set(range(6))


def test_seeding():
    a = PredatorPrey(seed=11)
    b = PredatorPrey()
    first = a.reset()
    again = b.reset(seed=11)
    np.testing.assert_array_equal(first.obs, again.obs)
    actions = np.random.default_rng(0).integers(0, 5, size=(30, 4))
    for act in actions:
        sa, sb = a.step(act), b.step(act)
        np.testing.assert_array_equal(sa.obs, sb.obs)
        assert sa.reward == sb.reward
    other = PredatorPrey(seed=12).reset()
    assert not np.array_equal(first.state, other.state)
    with pytest.raises(ConfigError, match="seed"):
        PredatorPrey(seed=-1)


def test_team_reward_is_sum_of_agent_rewards():
    env = PredatorPrey(seed=5)
    rng = np.random.default_rng(5)
    for _ in range(20):
        step = env.reset()
        while not (step.terminated or step.truncated):
            step = env.step(chase_actions(step.obs, rng))
            assert step.reward == sum(step.info["agent_rewards"].tolist())
            assert len(set(step.info["agent_rewards"].tolist())) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"grid_shape": (1, 5)}, "grid_shape"),
        ({"grid_shape": (7,)}, "grid_shape"),
        ({"grid_shape": (3, 3), "n_agents": 3, "n_preys": 2}, "n_agents + n_preys"),
        ({"grid_shape": (4, 4), "n_agents": 8, "n_preys": 2}, "n_agents + n_preys"),
        ({"n_agents": 0}, "n_agents"),
        ({"n_agents": 2.5}, "n_agents"),
        ({"n_preys": True}, "n_preys"),
        ({"agent_view_mask": (4, 5)}, "agent_view_mask"),
        ({"agent_view_mask": 4}, "agent_view_mask"),
        ({"agent_view_mask": (9, 9)}, "agent_view_mask"),
        ({"prey_move_probs": (0.5, 0.5)}, "prey_move_probs"),
        ({"prey_move_probs": (0.5, 0.5, 0.5, 0, 0)}, "prey_move_probs"),
        ({"prey_move_probs": (1.5, -0.5, 0, 0, 0)}, "prey_move_probs"),
        ({"max_steps": 0}, "max_steps"),
        ({"penalty": "high"}, "penalty"),
        ({"step_cost": float("nan")}, "step_cost"),
        ({"prey_capture_reward": None}, "prey_capture_reward"),
        ({"grid": (7, 7)}, "grid"),
    ],
)
def test_bad_settings_name_the_field(params, field):
    with pytest.raises(ConfigError) as err:
        PredatorPrey(**params)
    assert str(err.value).startswith(field + ":") or str(err.value).startswith(field + "[")
    assert isinstance(err.value, ValueError)


def test_placeable_cells_count_only_rows_and_cols_up_to_grid_minus_2():
    # 3x3 has 9 cells, but ma-gym draws only from the 2x2 corner: 4 entities fit, 5 do not
    PredatorPrey(grid_shape=(3, 3), n_agents=3, n_preys=1, agent_view_mask=3)
    with pytest.raises(ConfigError, match="rows 0..1 and columns 0..1"):
        PredatorPrey(grid_shape=(3, 3), n_agents=4, n_preys=1, agent_view_mask=3)
    # Counting fits, but two predators in a 2x2 corner leave no cell away from them; ma-gym
    # would loop forever, we raise.
    env = PredatorPrey(grid_shape=(3, 3), n_agents=2, n_preys=1, agent_view_mask=3)
    with pytest.raises(ConfigError, match="n_agents"):
        env.reset()


@pytest.mark.parametrize(
    ("actions", "match"),
    [
        (np.array([0, 1, 2, 5]), "outside the action space"),
        (np.array([0, 1, 2, -1]), "outside the action space"),
        (np.array([0, 1, 2]), "shape"),
        (np.zeros((4, 1), int), "shape"),
        (np.array([0.0, 1.0, 2.0, 3.0]), "integers"),
    ],
)
def test_bad_actions(actions, match):
    env = PredatorPrey(seed=0)
    env.reset()
    with pytest.raises(ValueError, match=match):
        env.step(actions)


def test_step_before_reset():
    with pytest.raises(RuntimeError, match="reset"):
        PredatorPrey(seed=0).step(np.zeros(4, int))


def test_other_view_sizes():
    env = PredatorPrey(seed=0, agent_view_mask=(3, 7), **STILL)
    assert env.info.obs_size == 2 + 21 + 1
    obs = env._place(agents=[(3, 3), (0, 0), (0, 6), (6, 6)], preys=[(2, 6), (5, 3)]).obs
    view = obs[0, 2:-1].reshape(3, 7)
    assert view[0, 6] == 1 and view.sum() == 1  # offset (-1, +3); (5,3) is 2 rows away


def test_registry_builds_it():
    env = make_env("predator_prey", "native", seed=1, penalty=-0.5)
    assert isinstance(env, PredatorPrey) and env.geometry.penalty == -0.5
    assert set(PAPER_DEFAULTS) >= {"grid_shape", "n_agents", "agent_view_mask"}


def test_pettingzoo_parallel_api():
    from pettingzoo.test import parallel_api_test

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the test reports API problems as warnings
        parallel_api_test(parallel_env(seed=0), num_cycles=200)
        parallel_api_test(parallel_env(seed=0, grid_shape=(5, 5), n_agents=2, n_preys=1))


def test_pettingzoo_wrapper_contents():
    import gymnasium

    env = parallel_env(seed=4)
    assert env.possible_agents == [f"predator_{i}" for i in range(4)]
    assert isinstance(env.observation_space("predator_0"), gymnasium.spaces.Box)
    assert env.observation_space("predator_0").shape == (28,)
    assert env.action_space("predator_3") == gymnasium.spaces.Discrete(5)
    obs, infos = env.reset(seed=4)
    single = PredatorPrey(seed=4).reset()
    np.testing.assert_array_equal(obs["predator_2"], single.obs[2])
    assert infos["predator_0"]["action_mask"].tolist() == [1] * 5
    np.testing.assert_array_equal(env.state(), single.state)
    obs, rewards, terms, truncs, infos = env.step({a: 4 for a in env.agents})
    assert set(rewards) == set(env.possible_agents)
    assert all(r < 0 for r in rewards.values())
    with pytest.raises(ValueError, match="predator_1"):
        env.step({"predator_0": 4})
    generic = PettingZooParallelEnv(PredatorPrey(seed=0))
    assert generic.possible_agents[0] == "agent_0"


def test_chase_policy_rules_and_benefit():
    obs = np.zeros((5, 28), np.float32)
    obs[0, 2 + 14] = 1  # prey at (0, +2): right
    obs[1, 2 + 22] = 1  # (+2, 0): down
    obs[2, 2 + 13] = 1  # adjacent (0, +1): wait
    obs[3, 2 + 6] = 1  # (-1, -1): |rows| == |cols|, rows first: up
    obs[3, 2 + 0] = 1  # (-2, -2) is farther
    obs[4, 2 + 14] = 1  # (0, +2) and (0, -2) are as near: the lower view index wins
    obs[4, 2 + 10] = 1
    rng = np.random.default_rng(0)
    assert chase_actions(obs, rng).tolist() == [RIGHT, DOWN, NOOP, UP, LEFT]
    # nothing visible: uniform random actions
    many = chase_actions(np.zeros((1000, 28), np.float32), rng)
    assert set(many.tolist()) == set(range(5))

    def mean_length(policy):
        env, rng, total = PredatorPrey(seed=9), np.random.default_rng(9), 0
        for _ in range(100):
            step = env.reset()
            while not (step.terminated or step.truncated):
                step = env.step(policy(step.obs, rng))
                total += 1
        return total / 100

    # chasing catches both prey sooner than acting at random (about 69 vs 89 steps)
    assert mean_length(chase_actions) < mean_length(lambda o, r: r.integers(0, 5, size=len(o))) - 8
