"""VectorPredatorPrey against the single-episode PredatorPrey.

Episode b of ``VectorPredatorPrey(B, seed=s)`` draws from its own stream seeded like
``PredatorPrey(seed=sub_seeds(s, B)[b])``, so under the same actions both must give exactly
the same observations, states, rewards and flags, episode after episode (resets continue the
streams). Also: frozen finished episodes, no auto-reset, seeding and bad input.
"""

from __future__ import annotations

import numpy as np
import pytest

from ficomm.envs import ConfigError, make_vector_env
from ficomm.envs.predator_prey import (
    PredatorPrey,
    VectorPredatorPrey,
    chase_actions,
    sub_seeds,
)


def random_policy(obs, rng):
    return rng.integers(0, 5, size=obs.shape[:-1])


POLICIES = {"random": random_policy, "chase": chase_actions}


def compare(vec, singles, policy, rounds, rng):
    """Run `rounds` batches of episodes through both forms; return the episode count."""
    B = vec.num_envs
    for _ in range(rounds):
        vs = vec.reset()
        last = [env.reset() for env in singles]
        for b in range(B):
            np.testing.assert_array_equal(vs.obs[b], last[b].obs)
        live = np.ones(B, bool)
        t = 0
        while not vec.done.all():
            actions = policy(vs.obs, rng)
            vs = vec.step(actions)
            t += 1
            for b in range(B):
                if live[b]:
                    s = singles[b].step(actions[b])
                    last[b] = s
                    live[b] = not (s.terminated or s.truncated)
                    assert vs.reward[b] == s.reward, (b, t)
                    assert vs.info["agent_rewards"][b].tolist() == s.info["agent_rewards"].tolist()
                    assert vs.info["captures"][b] == s.info["captures"]
                else:  # frozen: nothing changes, reward 0
                    assert vs.reward[b] == 0 and not vs.info["agent_rewards"][b].any()
                s = last[b]
                assert np.array_equal(vs.obs[b], s.obs), (b, t)
                assert np.array_equal(vs.state[b], s.state), (b, t)
                assert (vs.terminated[b], vs.truncated[b]) == (s.terminated, s.truncated)
            assert np.array_equal(vec.done, ~live)
    return rounds * B


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_matches_single_episodes_exactly(policy):
    B, seed = 50, 77
    vec = VectorPredatorPrey(B, seed=seed)
    singles = [PredatorPrey(seed=s) for s in sub_seeds(seed, B)]
    assert compare(vec, singles, POLICIES[policy], 10, np.random.default_rng(1)) == 500


@pytest.mark.parametrize(
    "params",
    [
        {"grid_shape": (5, 5), "n_agents": 2, "n_preys": 1, "penalty": -0.5},
        {"grid_shape": (9, 6), "n_agents": 5, "n_preys": 3, "agent_view_mask": (3, 5)},
        {"grid_shape": (2, 8), "n_agents": 2, "n_preys": 1, "agent_view_mask": 1},
    ],
)
def test_matches_single_episodes_other_settings(params, monkeypatch):
    # a tiny word buffer forces refills mid-episode and mid-reset
    monkeypatch.setattr(VectorPredatorPrey, "buffer_words", 64)
    B, seed = 12, 5
    vec = VectorPredatorPrey(B, seed=seed, **params)
    singles = [PredatorPrey(seed=s, **params) for s in sub_seeds(seed, B)]
    view = vec.geometry.view

    def policy(obs, rng):
        return chase_actions(obs, rng, view)

    compare(vec, singles, policy, 4, np.random.default_rng(2))


def test_seeds_and_reset():
    a = VectorPredatorPrey(4, seed=3)
    b = VectorPredatorPrey(8, seed=3)
    first_a, first_b = a.reset(), b.reset()
    np.testing.assert_array_equal(first_a.obs, first_b.obs[:4])  # sub_seeds is prefix-stable
    again = a.reset(seed=3)
    np.testing.assert_array_equal(first_a.obs, again.obs)
    assert not np.array_equal(first_a.obs, a.reset().obs)  # a plain reset continues streams
    other = VectorPredatorPrey(4, seed=4).reset()
    assert not np.array_equal(first_a.state, other.state)
    assert sub_seeds(3, 4) == sub_seeds(3, 8)[:4]


def test_frozen_episodes_and_no_auto_reset():
    vec = VectorPredatorPrey(6, seed=0, max_steps=5)
    start = vec.reset()
    assert start.obs.shape == (6, 4, 28) and start.state.shape == (6, 15)
    assert start.avail.shape == (6, 4, 5) and start.avail.all()
    assert start.reward.shape == (6,) and not vec.done.any()
    rng = np.random.default_rng(0)
    for _ in range(5):
        step = vec.step(rng.integers(0, 5, size=(6, 4)))
    assert vec.done.all()
    for _ in range(3):
        later = vec.step(rng.integers(0, 5, size=(6, 4)))
        np.testing.assert_array_equal(later.obs, step.obs)
        np.testing.assert_array_equal(later.state, step.state)
        assert not later.reward.any()
        np.testing.assert_array_equal(later.terminated, step.terminated)
        np.testing.assert_array_equal(later.truncated, step.truncated)
        np.testing.assert_array_equal(later.info["captures"], step.info["captures"])
    assert (step.terminated | step.truncated).all() and not (step.terminated & step.truncated).any()


@pytest.mark.parametrize(
    ("actions", "match"),
    [
        (np.full((3, 4), 5), "outside the action space"),
        (np.array([[0, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 0]]), r"actions\[1, 1\]"),
        (np.zeros((3, 3), int), "shape"),
        (np.zeros(4, int), "shape"),
        (np.zeros((3, 4)), "integers"),
    ],
)
def test_bad_actions(actions, match):
    vec = VectorPredatorPrey(3, seed=0)
    vec.reset()
    with pytest.raises(ValueError, match=match):
        vec.step(actions)


def test_bad_construction():
    with pytest.raises(ConfigError, match="num_envs"):
        VectorPredatorPrey(0)
    with pytest.raises(ConfigError, match="agent_view_mask"):
        VectorPredatorPrey(2, agent_view_mask=(2, 2))
    with pytest.raises(RuntimeError, match="reset"):
        VectorPredatorPrey(2).step(np.zeros((2, 4), int))


def test_registry_builds_it():
    vec = make_vector_env("predator_prey", "native", 5, seed=1, n_preys=3)
    assert isinstance(vec, VectorPredatorPrey) and vec.num_envs == 5
    assert vec.info.state_size == 2 * 4 + 3 * 3 + 1
