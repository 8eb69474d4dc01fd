"""Independent recurrent Q-learning over stacked parameter owners: TD loss, per-owner
gradient clipping, RMSprop, target sync.

Why updating all NPS agents at once equals the authors' "in turn": agent i's loss depends on
its own Q-net and message net and on the others' messages, which are detached and computed
before any update. So the gradient of the sum of all agents' losses with respect to agent i's
parameters is exactly the gradient of agent i's own loss, and neither agent i's update nor its
target copy changes anything another agent's loss reads in that iteration. RMSprop is
elementwise, so one optimizer over the stacked tensors keeps the same state as one optimizer
per agent; clipping is computed per owner (per owner). tests/learner checks this numerically
against a literal agent-by-agent update.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from ficomm.buffer import Batch
from ficomm.nets import AgentNets

UNAVAILABLE_Q = -9999999.0  # large negative, not -inf: padded steps would give NaN


def clip_grad_norm_per_owner(params: list[Tensor], max_norm: float) -> Tensor:
    """Scale each owner's gradient (leading axis) to global norm <= max_norm, like
    torch.nn.utils.clip_grad_norm_ applied to each owner's parameters separately.
    Returns the (G,) norms before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    sq = torch.stack([g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads]).sum(0)
    norms = sq.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    return norms


def batch_to_tensors(
    batch: Batch, device: torch.device, dtype: torch.dtype = torch.float32
) -> dict[str, Tensor]:
    """numpy batch (B, T, n, ...) -> agent-major tensors (n, T, B, ...) on the device."""

    def t(x: np.ndarray, float_dtype: bool = False) -> Tensor:
        x = torch.from_numpy(np.ascontiguousarray(x))
        return x.to(device, dtype) if float_dtype else x.to(device)

    return {
        "obs": t(batch.obs, True).permute(2, 1, 0, 3).contiguous(),  # (n, T+1, B, obs)
        "actions": t(batch.actions.astype(np.int64)).permute(2, 1, 0).contiguous(),  # (n, T, B)
        "avail": t(batch.avail).permute(2, 1, 0, 3).contiguous(),  # (n, T+1, B, A)
        "reward": t(batch.reward, True).T.contiguous(),  # (T, B)
        "terminal": t(batch.terminal, True).T.contiguous(),
        "mask": t(batch.mask, True).T.contiguous(),
    }


class Learner:
    """Online and target networks of every agent, one optimizer over the stacked owners."""

    def __init__(
        self,
        nets: AgentNets,
        *,
        lr: float,
        rms_alpha: float = 0.99,
        rms_eps: float = 1e-8,
        gamma: float = 0.99,
        grad_clip: float = 10.0,
        target_update: int = 200,
        target_unroll: str = "zero_start",
    ):
        self.nets = nets
        self.target = copy.deepcopy(nets)
        self.target.requires_grad_(False)
        self.params = list(nets.parameters())
        self.optimizer = torch.optim.RMSprop(self.params, lr=lr, alpha=rms_alpha, eps=rms_eps)
        self.gamma, self.grad_clip = gamma, grad_clip
        self.target_update, self.target_unroll = target_update, target_unroll
        self.grad_steps = 0  # training iterations so far (shared by all agents)

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    def losses(self, b: dict[str, Tensor]) -> Tensor:
        """Per-owner TD losses (G,): the mean squared TD error over valid steps (and, under
        PS, over agents). Each owner's loss reaches only that owner's parameters."""
        nets, n_actions = self.nets, self.nets.n_actions
        obs, actions, mask = b["obs"], b["actions"], b["mask"]
        T = actions.shape[1]
        act_oh = torch.nn.functional.one_hot(actions, n_actions).to(obs.dtype)
        last_oh = torch.cat([torch.zeros_like(act_oh[:, :1]), act_oh], 1)  # (n, T+1, B, A)

        q, _ = nets.unroll(obs[:, :T], last_oh[:, :T])
        q_taken = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # (n, T, B)
        with torch.no_grad():
            if self.target_unroll == "zero_start":
                # Authors' quirk: a fresh unroll over next observations (never sees o_0).
                q_next, _ = self.target.unroll(obs[:, 1:], act_oh)
            else:
                q_next = self.target.unroll(obs, last_oh)[0][:, 1:]
            q_next = q_next.masked_fill(~b["avail"][:, 1:], UNAVAILABLE_Q)
            y = b["reward"] + self.gamma * (1.0 - b["terminal"]) * q_next.max(-1).values
        sq_err = ((q_taken - y) * mask).pow(2).sum((1, 2))  # (n,)
        per_owner = sq_err.view(nets.owners, nets.per_owner).sum(1)
        return per_owner / (nets.per_owner * mask.sum())

    def train_step(self, batch: Batch) -> Tensor:
        """One training iteration for every owner; returns the mean loss over owners
        (a detached tensor, so the loop need not synchronise with the device)."""
        b = batch_to_tensors(batch, self.device, self.params[0].dtype)
        losses = self.losses(b)
        self.optimizer.zero_grad(set_to_none=False)
        losses.sum().backward()
        clip_grad_norm_per_owner(self.params, self.grad_clip)
        self.optimizer.step()
        # Authors: copy when the shared counter is a positive multiple of target_update,
        # checked before it is incremented (first copy after the 201st update).
        if self.grad_steps > 0 and self.grad_steps % self.target_update == 0:
            self.sync_target()
        self.grad_steps += 1
        return losses.detach().mean()

    def sync_target(self) -> None:
        with torch.no_grad():
            for t, s in zip(self.target.parameters(), self.params, strict=True):
                t.copy_(s)

    def state_dict(self) -> dict:
        return {
            "nets": self.nets.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "grad_steps": self.grad_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.nets.load_state_dict(state["nets"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.grad_steps = int(state["grad_steps"])
