"""Episode replay: exact compact storage, FIFO, sampling, the stored flags, and memory that
stays flat once the buffer is full."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ficomm.buffer import Episode, EpisodeBuffer, ObsCodec
from ficomm.config import make_config
from ficomm.envs import make_env
from ficomm.envs.base import EnvInfo
from ficomm.methods import layout_for
from ficomm.nets import AgentNets
from ficomm.rollout import EpsilonSchedule, Policy, collect_episode, collect_episodes


def play(env, n_episodes, timelimit_terminal=True, seed=0):
    torch.manual_seed(seed)
    info = env.info
    policy = Policy(
        AgentNets(layout_for("ps", False), info.n_agents, info.obs_size, info.n_actions, 8)
    )
    rng = np.random.default_rng(seed)
    eps = EpsilonSchedule(1.0, 0.05, 1000)
    out = []
    for k in range(n_episodes):
        ep = Episode.empty(info)
        collect_episode(env, policy, ep, eps, rng, seed * 1000 + k, timelimit_terminal)
        out.append(ep)
    return out


def test_predator_prey_observations_are_stored_exactly_as_uint8_codes():
    env = make_env("predator_prey", "native", seed=0)
    episodes = play(env, 6)
    buf = EpisodeBuffer(10, env.info)
    for ep in episodes:
        buf.add(ep)
    assert buf.obs.codes is not None and len(buf.obs.table) <= 256
    assert buf.obs.nbytes == 10 * 101 * 4 * 28  # one byte per value
    for i, ep in enumerate(episodes):
        stored = buf.obs.read(np.array([i]), 101)[0]
        assert stored.dtype == np.float32
        np.testing.assert_array_equal(stored[: ep.length + 1], ep.obs[: ep.length + 1])
        assert not stored[ep.length + 1 :].any()  # padding is zero


def test_codec_falls_back_to_float32_when_values_are_many():
    codec = ObsCodec((3, 4, 5))
    rng = np.random.default_rng(0)
    few = (rng.integers(0, 3, (4, 5)) / 3).astype(np.float32)
    codec.write(0, few)
    many = (rng.normal(size=(4, 5)) * np.arange(20).reshape(4, 5)).astype(np.float32)
    codec.write(1, few + 0)
    codec.write(2, many)
    assert codec.codes is not None
    for _ in range(15):  # 300 more distinct values: more than a uint8 code can index
        codec.write(0, rng.normal(size=(4, 5)).astype(np.float32))
    assert codec.codes is None and codec.raw.dtype == np.float32
    np.testing.assert_array_equal(codec.read(np.array([1, 2]), 4), np.stack([few, many]))


def test_stored_flags_follow_the_time_limit_option():
    env = make_env("predator_prey", "native", seed=0)
    for quirk in (True, False):
        for ep in play(env, 4, timelimit_terminal=quirk):
            L = ep.length
            assert 1 <= L <= 100 and not ep.terminal[: L - 1].any() and not ep.terminal[L:].any()
            if L == 100 and ep.reward[L - 1] < 4:  # truncated with prey left
                assert ep.terminal[L - 1] == quirk
            else:  # all prey captured: always terminal
                assert ep.terminal[L - 1]


def test_fifo_sampling_and_cut_to_longest_episode():
    info = EnvInfo(2, 3, 4, 1, 10, False)
    buf = EpisodeBuffer(3, info)
    for k, length in enumerate([2, 5, 3, 4]):
        ep = Episode.empty(info)
        ep.length = length
        ep.obs[: length + 1] = k + 1
        ep.reward[:length] = k + 1
        buf.add(ep)
    assert buf.size == 3 and buf.ptr == 1
    assert sorted(buf.reward[:, 0]) == [2, 3, 4]  # the first episode was overwritten
    rng = np.random.default_rng(0)
    batch = buf.sample(32, rng)
    assert batch.obs.shape[0] == 3 and batch.reward.shape == (3, 5)  # min(32, size) episodes
    one = EpisodeBuffer(3, info)
    one.add(ep)
    b = one.sample(32, rng)
    assert b.reward.shape == (1, 4) and b.mask.sum() == 4  # first step: a batch of one
    lengths = []
    for _ in range(200):
        b = buf.sample(2, rng)
        lengths.append(b.mask.shape[1])
        assert b.mask.shape[1] == b.mask.sum(1).max()
    assert set(lengths) == {3, 4, 5}  # with replacement, uniform: all maxima occur


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_getaffinity"), reason="needs /proc")
def test_memory_stays_flat_after_the_buffer_is_full(tmp_path):
    from ficomm.train import Run

    cfg = make_config(
        {
            "out": str(tmp_path),
            "hidden": 16,
            "batch_size": 4,
            "buffer_size": 5,
            "budget": 10000,
            "eval_interval": 10000,
            "wandb_mode": "disabled",
        }
    )
    run = Run(cfg)
    nbytes, rss = [], []
    for k in range(60):
        collect_episodes(run.env, [run.policy], [run.episode], [run.eps], [run.rng], [k], True)
        run.buffer.add(run.episode)
        run.learner.train_step(run.buffer.sample(cfg.batch_size, run.rng))
        nbytes.append(run.buffer.nbytes)
        if k in (15, 59):
            rss.append(_rss_mb())
    assert len(set(nbytes)) == 1 and run.buffer.size == 5
    assert rss[1] - rss[0] < 8, (
        f"resident memory grew by {rss[1] - rss[0]:.1f} MB after the buffer filled"
    )
