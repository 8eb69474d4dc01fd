"""ficomm's PredatorPrey against the real ma-gym 0.0.14, step by step.

With the same seeds and the same actions the two must give the same observations (ours are
float32), the same per-agent rewards, and the same done flags (ma-gym's done = our
terminated or truncated), over 500 random-policy and 500 chasing-policy episodes for each of
three settings.
"""

from __future__ import annotations

import numpy as np
import pytest

from ficomm.envs.predator_prey import PredatorPrey, chase_actions, gym_random_state

pytestmark = pytest.mark.magym

try:
    import gym
    import ma_gym  # noqa: F401 - registers the ma_gym: environments
    from gym.utils import seeding
except ImportError:  # pragma: no cover - CI installs ma-gym (bash .ci/setup test)
    pytest.skip(
        "ma_gym 0.0.14 is not installed; install it with `bash .ci/setup test`",
        allow_module_level=True,
    )

# (gym id, ma-gym kwargs as the caller passes them, ficomm kwargs for the same env)
SETTINGS = {
    "paper": (
        "ma_gym:PredatorPrey7x7-v0",
        {"grid_shape": (7, 7), "n_agents": 4, "n_preys": 2, "penalty": -0.75},
        {},
    ),
    "magym_5x5": (
        "ma_gym:PredatorPrey5x5-v0",
        {},
        {"grid_shape": (5, 5), "n_agents": 2, "n_preys": 1, "penalty": -0.5},
    ),
    "magym_7x7": (
        "ma_gym:PredatorPrey7x7-v0",
        {},
        {"grid_shape": (7, 7), "n_agents": 4, "n_preys": 2, "penalty": -0.5},
    ),
}
EPISODES = 500


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 + 7, 2**64 + 3])
def test_seeding_matches_gym(seed):
    ours = gym_random_state(seed).get_state()
    theirs = seeding.np_random(seed)[0].get_state()
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


@pytest.mark.parametrize("policy", ["random", "chase"])
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_same_episodes_as_magym(setting, policy):
    gym_id, magym_kwargs, kwargs = SETTINGS[setting]
    theirs = gym.make(gym_id, **magym_kwargs)
    seed = 1000 + sorted(SETTINGS).index(setting)
    ours = PredatorPrey(seed=seed, **kwargs)
    theirs.seed(seed)
    n = ours.info.n_agents
    policy_rng = np.random.default_rng(seed)
    lengths, captures = [], []
    for episode in range(EPISODES):
        if episode % 100 == 50:  # re-seeding mid-stream must match too
            step = ours.reset(seed=seed + episode)
            theirs.seed(seed + episode)
            their_obs = theirs.reset()
        else:  # otherwise both streams simply continue
            step = ours.reset()
            their_obs = theirs.reset()
        np.testing.assert_array_equal(step.obs, np.asarray(their_obs, np.float32))
        done, t = False, 0
        while not done:
            if policy == "random":
                actions = policy_rng.integers(0, 5, size=n)
            else:
                actions = chase_actions(step.obs, policy_rng)
            their_obs, their_rewards, their_dones, their_info = theirs.step(actions.tolist())
            step = ours.step(actions)
            t += 1
            where = (setting, policy, "episode", episode, "step", t)
            assert step.obs.dtype == np.float32 and step.obs.shape == (n, 28)
            expected = np.asarray(their_obs, np.float32)
            if not np.array_equal(step.obs, expected):  # (the plain check is much cheaper)
                np.testing.assert_array_equal(step.obs, expected, err_msg=where)
            assert step.info["agent_rewards"].tolist() == their_rewards, where
            assert step.reward == sum(their_rewards), where
            done = step.terminated or step.truncated
            assert their_dones == [done] * n, where
            assert step.terminated == (not any(their_info["prey_alive"])), where
        lengths.append(t)
        captures.append(step.info["captures"])
    # The policies must have produced both endings, so both code paths were compared.
    assert min(lengths) < 100 and max(lengths) == 100
    assert max(captures) == kwargs.get("n_preys", 2)
