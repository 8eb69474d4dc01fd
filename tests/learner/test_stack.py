"""Stacked learning: the runs of a pack on one owner axis (`StackedLearner`), one gradient
step for all of them, against each run's own `Learner` stepping alone."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from learner_helpers import PP, random_batch

from ficomm.learner import Learner, StackedLearner
from ficomm.methods import layout_for
from ficomm.nets import AgentNets
from ficomm.rollout import Policy, StackedPolicy

METHODS = {
    "PS": ("ps", True, "concat"),
    "PS+COMM": ("ps", True, "concat"),
    "NPS": ("nps", False, "concat"),
    "NPS+COMM": ("nps", True, "concat"),
    "NPS+COMM attention": ("nps", True, "attention"),
}
METHODS["PS"] = ("ps", False, "concat")
R = 3


def _learners(method: str, dtype: torch.dtype, kernel: str) -> list[Learner]:
    share, comm, channel = METHODS[method]
    out = []
    for seed in range(R):
        torch.manual_seed(seed)
        nets = AgentNets(
            layout_for(share, comm, channel=channel),
            PP["n"],
            PP["obs"],
            PP["actions"],
            16,
            msg_hidden=8,
            msg_dim=3,
            kernel=kernel,
        ).to(dtype)
        out.append(Learner(nets, lr=1e-2, target_update=2))
    return out


def _batches(step: int):
    """Per run: batches of different lengths; from step 3 on run 1 has stopped (None: it
    reached its budget), at step 4 run 2 has a smaller batch (a run whose buffer holds fewer
    episodes)."""
    rng = np.random.default_rng(step)
    out = []
    for r in range(R):
        T = 4 + r + step % 3
        B = 2 if (step == 4 and r == 2) else 3
        lengths = rng.integers(1, T + 1, B)
        lengths[0] = T
        out.append(random_batch(rng, B=B, T=T, lengths=lengths))
    if step >= 3:
        out[1] = None
    return out


@pytest.mark.parametrize("kernel", ["fused", "torch"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("method", list(METHODS))
def test_a_stacked_step_equals_each_runs_own_step(method, dtype, kernel):
    if kernel == "fused" and METHODS[method][2] == "attention":
        pytest.skip("the compiled kernel has no attention channel")
    alone = _learners(method, dtype, kernel)
    stacked = _learners(method, dtype, kernel)
    stack = StackedLearner(stacked)
    # losses: the kernel tests' tolerances; parameters after six RMSprop steps (which divide
    # by the gradients' running RMS, so rounding in small gradients grows): the mechanism
    # tests' in float64, 1e-4 in float32. The fused kernel computes each owner's rows
    # alone, so there the stack is exact unless a run's batch is padded (step 4).
    f64 = dtype == torch.float64
    tol = {"rtol": 1e-12, "atol": 1e-13} if f64 else {"rtol": 1e-5, "atol": 1e-6}
    ptol = {"rtol": 1e-9, "atol": 1e-11} if f64 else {"rtol": 1e-4, "atol": 1e-4}
    states = {}  # run -> (stacked, alone) state when it stopped, else at the end
    for step in range(6):
        batches = _batches(step)
        for r, batch in enumerate(batches):
            if batch is None and r not in states:  # it stopped: its final checkpoint
                stack.export(r)
                states[r] = (stacked[r].state_dict(), alone[r].state_dict())
        got = stack.train_step(batches)
        for r, (learner, batch) in enumerate(zip(alone, batches, strict=True)):
            if batch is None:
                assert got[r] == 0
                continue
            torch.testing.assert_close(got[r], learner.train_step(batch), **tol)
    for r in range(R):
        if r not in states:
            stack.export(r)
            states[r] = (stacked[r].state_dict(), alone[r].state_dict())
        ss, sa = states[r]
        assert ss["grad_steps"] == sa["grad_steps"] == (3 if r == 1 else 6)
        for part in ("nets", "target"):
            for k in sa[part]:
                torch.testing.assert_close(ss[part][k], sa[part][k], **ptol)
        opt_a, opt_s = sa["optimizer"]["state"], ss["optimizer"]["state"]
        for ka, ks in zip(opt_a.values(), opt_s.values(), strict=True):
            torch.testing.assert_close(ks["square_avg"], ka["square_avg"], **ptol)
            assert float(ks["step"]) == float(ka["step"])
    # the runs differ, so the equalities say something
    assert not torch.allclose(stacked[0].params[0], stacked[2].params[0])


def test_stacked_networks_pass_messages_only_within_a_run():
    torch.manual_seed(0)
    nets = AgentNets(layout_for("nps", True), PP["n"], PP["obs"], PP["actions"], 16, runs=2)
    obs = torch.rand(2 * PP["n"], 3, 2, PP["obs"])
    last = torch.zeros(2 * PP["n"], 3, 2, PP["actions"])
    q, _ = nets.unroll(obs, last)
    obs2 = obs.clone()
    obs2[PP["n"] :] += 1.0  # change run 1's observations only
    q2, _ = nets.unroll(obs2, last)
    assert torch.equal(q[: PP["n"]], q2[: PP["n"]])
    assert not torch.allclose(q[PP["n"] :], q2[PP["n"] :])


@pytest.mark.parametrize("method", ["PS+COMM", "NPS+COMM", "NPS+COMM attention"])
def test_stacked_acting_equals_each_runs_own_policy(method):
    learners = _learners(method, torch.float32, "torch")
    own = [Policy(copy.deepcopy(lr.nets)) for lr in learners]
    stack = StackedLearner(learners)
    acting = StackedPolicy(stack.core.nets).select([0, 2])  # run 1 has stopped
    rng = np.random.default_rng(0)
    acting.start()
    for p in own:
        p.start(1)
    for _ in range(5):
        obs = rng.random((2, PP["n"], PP["obs"])).astype(np.float32)
        q = acting.q_values(np.arange(2), obs)
        for b, r in enumerate([0, 2]):
            np.testing.assert_allclose(q[b], own[r].q_values(obs[b][None])[0], rtol=1e-5, atol=1e-6)
        actions = rng.integers(0, PP["actions"], (2, PP["n"]))
        acting.record(np.arange(2), actions)
        for b, r in enumerate([0, 2]):
            own[r].record(actions[b][None])
