"""The ``smax`` backend: 3s_vs_5z on jaxmarl's SMAX behind ficomm's protocol."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

# find_spec, not importorskip: importing jaxmarl here would import JAX before ficomm pins it
# to the CPU, and print to stdout.
if importlib.util.find_spec("jaxmarl") is None:
    pytest.skip("jaxmarl is not installed (pip install 'ficomm[smax]')", allow_module_level=True)
pytestmark = pytest.mark.smax

from ficomm.envs import ConfigError, make_env, make_vector_env  # noqa: E402
from ficomm.envs.smax import EPISODE_LIMIT, MAP_NAME, SmaxEnv, _kernels  # noqa: E402

STOP = 4  # SMAX: 0-3 moves, 4 stop (always available), 5-9 attack enemy i


def random_valid(avail: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (rng.random(avail.shape) * avail).argmax(-1)


def edit_state(env: SmaxEnv, **fields) -> None:
    """Overwrite fields of the SMAX state under a running episode. Same dtypes and committed
    to the env's device, as the kernel's own outputs are, so that nothing recompiles."""
    import jax

    inner = env._state.state
    new = {
        k: jax.device_put(np.asarray(v, dtype=getattr(inner, k).dtype), env._device)
        for k, v in fields.items()
    }
    env._state = env._state.replace(state=inner.replace(**new))


@pytest.fixture(scope="module")
def env() -> SmaxEnv:
    return make_env("3s_vs_5z", "smax", seed=0)


def test_sizes_are_smax_not_smac(env):
    i = env.info
    assert env.backend == "smax"
    assert (i.n_agents, i.n_actions, i.obs_size, i.state_size) == (3, 10, 101, 96)
    assert i.episode_limit == EPISODE_LIMIT == 250 and i.has_win
    s = env.reset(seed=1)
    assert s.obs.shape == (3, 101) and s.obs.dtype == np.float32
    assert s.state.shape == (96,) and s.state.dtype == np.float32
    assert s.avail.shape == (3, 10) and s.avail.dtype == bool
    assert (s.reward, s.terminated, s.truncated, s.info["won"]) == (0.0, False, False, False)


def test_seeded_episodes_repeat_and_masks_hold(env):
    def play(seed):
        s, trace = env.reset(seed=seed), []
        actions_rng = np.random.default_rng(seed)
        while not (s.terminated or s.truncated):
            assert s.avail[:, STOP].all()  # stop is always allowed
            s = env.step(random_valid(s.avail, actions_rng))
            trace.append((s.obs.copy(), s.reward))
            dead = s.obs[:, -10:].sum(-1) == 0  # own features are all zero once dead
            assert (s.avail[dead] == np.eye(10, dtype=bool)[STOP]).all()
        return trace, s

    a, end = play(11)
    b, _ = play(11)
    c, _ = play(12)
    assert len(a) == len(b) and all(np.array_equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
    assert len(a) != len(c) or not all(
        np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=True)
    )
    assert end.terminated and not end.truncated  # a random team dies well before 250 steps
    assert end.info["dead_allies"] == 3 and not end.info["won"]
    assert 0.0 <= sum(r for _, r in a) < 1.0  # enemy health removed, at most 1 without a win
    # one compile per kernel: the reset state was made to match the stepped state's dtypes
    k = _kernels(MAP_NAME, EPISODE_LIMIT)
    assert k.step._cache_size() == 1 and k.reset._cache_size() == 1


def test_invalid_actions_raise_and_are_not_sent(env):
    s = env.reset(seed=3)
    step_before = int(env._state.state.step)
    blocked = np.argwhere(~s.avail)
    assert blocked.size, "attacks are out of range at the start of 3s_vs_5z"
    agent, action = blocked[0]
    actions = np.full(3, STOP)
    actions[agent] = action
    with pytest.raises(ValueError, match=f"action {action} of agent {agent} is not available"):
        env.step(actions)
    for bad in (
        np.array([STOP, STOP, 10]),
        np.array([STOP, -1, STOP]),
        np.full(3, 4.0),
        np.full(2, STOP),
    ):
        with pytest.raises(ValueError):
            env.step(bad)
    assert int(env._state.state.step) == step_before  # nothing reached jaxmarl
    env.step(np.full(3, STOP))
    assert int(env._state.state.step) == step_before + 1


@pytest.mark.parametrize(
    ("allies", "enemies", "won", "bonus"),
    [(True, False, True, 1.0), (False, True, False, 0.0), (False, False, False, 0.0)],
    ids=["win", "loss", "draw"],
)
def test_win_is_all_enemies_dead_with_an_ally_alive(env, allies, enemies, won, bonus):
    env.reset(seed=4)
    health = np.asarray(env._state.state.unit_health).copy()
    if not allies:
        health[:3] = 0.0
    if not enemies:
        health[3:] = 0.0
    edit_state(env, unit_health=health)
    s = env.step(np.full(3, STOP))
    assert s.terminated and not s.truncated
    assert s.info["won"] is won
    # SMAX pays its win bonus (1.0) on exactly this condition; no damage was dealt this step
    assert s.reward == pytest.approx(bonus)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.full(3, STOP))


def test_time_limit_is_truncation_unless_the_battle_ends_on_it(env):
    env.reset(seed=5)
    edit_state(env, step=EPISODE_LIMIT - 2)
    s = env.step(np.full(3, STOP))
    assert not (s.terminated or s.truncated)  # step 249 of 250
    s = env.step(np.full(3, STOP))
    assert s.truncated and not s.terminated and not s.info["won"]  # both sides still stand

    env.reset(seed=5)
    health = np.asarray(env._state.state.unit_health).copy()
    health[3:] = 0.0
    edit_state(env, step=EPISODE_LIMIT - 1, unit_health=health)
    s = env.step(np.full(3, STOP))
    assert s.terminated and not s.truncated and s.info["won"]


def test_vector_env_freezes_finished_episodes():
    venv = make_vector_env("3s_vs_5z", "smax", 4, seed=7)
    assert venv.backend == "smax" and venv.num_envs == 4
    s = venv.reset()
    assert s.obs.shape == (4, 3, 101) and s.avail.shape == (4, 3, 10)
    assert not np.array_equal(s.obs[0], s.obs[1])  # independent episodes
    rng = np.random.default_rng(0)
    returns = np.zeros(4)
    frozen_obs = {}
    while not venv.done.all():
        was_done = venv.done
        actions = random_valid(s.avail, rng)
        actions[was_done] = 0  # "move" would be refused for a dead unit: ignored when done
        if (~was_done).any():
            live = np.flatnonzero(~was_done)[0]
            bad = actions.copy()
            bad[live] = np.where(s.avail[live], -1, np.arange(10)).max(-1)
            if (bad[live] >= 0).any():
                with pytest.raises(ValueError, match="not available"):
                    venv.step(np.where(bad < 0, actions, bad))
        s = venv.step(actions)
        returns += s.reward
        assert (s.reward[was_done] == 0).all()
        assert (s.terminated | s.truncated)[was_done].all()
        for i in np.flatnonzero(was_done):
            np.testing.assert_array_equal(s.obs[i], frozen_obs.setdefault(i, s.obs[i]))
        for i in np.flatnonzero(venv.done & ~was_done):
            frozen_obs[i] = s.obs[i].copy()
    assert s.terminated.all() and not s.truncated.any()
    assert (s.info["won"] == ((s.info["dead_enemies"] == 5) & (s.info["dead_allies"] < 3))).all()
    assert (returns >= 0).all() and (returns < 1).all()
    assert _kernels(MAP_NAME, EPISODE_LIMIT).step_batch._cache_size() == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"device": "tpu"}, "env_args.device"),
        ({"device": "gpu"}, "env_args.device"),  # JAX runs on the CPU in the tests
        ({"episode_limit": 0}, "env_args.episode_limit"),
        ({"map_name": "3m"}, "env_args: unknown key"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_params_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        SmaxEnv(**kwargs)


def test_import_is_quiet_and_jax_stays_on_cpu():
    code = (
        "import os, sys\n"
        "from ficomm.envs import make_env\n"
        "env = make_env('3s_vs_5z', 'smax', seed=0)\n"
        "import jax\n"
        "sys.stderr.write(os.environ['JAX_PLATFORMS'] + ' ' + jax.default_backend())\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # jaxmarl's import-time prints are swallowed
    assert proc.stderr.strip().endswith("cpu cpu")
