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


def stack_batches(
    batches: list[Batch], device: torch.device, dtype: torch.dtype = torch.float32
) -> dict[str, Tensor]:
    """One batch per run of a stack -> the stacked learner's tensors: agent-major over all
    runs' agents (R * n, T, B, ...) and per run (R, T, B) for reward, terminal and mask. The
    runs' batches are padded with zeros (mask 0) to the longest episode and the largest
    batch, as the replay buffer pads a batch's shorter episodes."""
    B = max(b.mask.shape[0] for b in batches)
    T = max(b.mask.shape[1] for b in batches)

    def pad(x: np.ndarray, steps: int) -> np.ndarray:
        out = np.zeros((B, steps, *x.shape[2:]), x.dtype)
        out[: x.shape[0], : x.shape[1]] = x
        return out

    per_agent = {
        k: np.concatenate([pad(getattr(b, k), T + (k != "actions")) for b in batches], 2)
        for k in ("obs", "avail", "actions")
    }
    per_run = {
        k: np.stack([pad(getattr(b, k), T) for b in batches])
        for k in ("reward", "terminal", "mask")
    }
    b = batch_to_tensors(Batch(**per_agent, **{k: v[0] for k, v in per_run.items()}), device, dtype)
    for k, v in per_run.items():  # (R, B, T) -> (R, T, B)
        b[k] = torch.from_numpy(v).to(device, dtype).transpose(1, 2).contiguous()
    extent = [b.mask.shape[::-1] for b in batches]  # each run's own (T, B)
    if any(e != (T, B) for e in extent):
        b["extent"] = extent
    return b


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
        PS, over agents). Each owner's loss reaches only that owner's parameters.

        Reward, terminal and mask are (T, B), or (R, T, B) for networks stacked over R runs
        (`stack_batches`): each run's targets and normalisation are its own. Where runs'
        batches were padded (`extent`), each run's squared errors are summed over its own
        steps only, so that the sum is rounded as in the run's own step (a longer sum of the
        same numbers and zeros can round differently in the last place)."""
        nets, n_actions = self.nets, self.nets.n_actions
        obs, actions = b["obs"], b["actions"]
        R, (N, T, B) = nets.runs, actions.shape
        reward, terminal, mask = (b[k].view(R, 1, T, B) for k in ("reward", "terminal", "mask"))
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
            q_max = q_next.max(-1).values.view(R, N // R, T, B)
            y = reward + self.gamma * (1.0 - terminal) * q_max
        sq = ((q_taken.view(R, N // R, T, B) - y) * mask).pow(2)
        if "extent" in b:
            own = [
                sq[r, :, :t, :bb].contiguous().sum((1, 2)) for r, (t, bb) in enumerate(b["extent"])
            ]
            sq_err = torch.stack(own)
        else:
            sq_err = sq.sum((2, 3))  # (R, n)
        per_owner = sq_err.view(nets.owners, nets.per_owner).sum(1)
        # a run with no valid step (a finished run's empty batch in a stack) has loss 0
        steps = mask.sum((1, 2, 3)).clamp(min=1).repeat_interleave(nets.owners // R)
        return per_owner / (nets.per_owner * steps)

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
        # copies: under a StackedLearner the parameters are views of the stack, and saving a
        # view would save the whole stack
        def own(state: dict) -> dict:
            return {k: v.clone() for k, v in state.items()}

        return {
            "nets": own(self.nets.state_dict()),
            "target": own(self.target.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "grad_steps": self.grad_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.nets.load_state_dict(state["nets"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.grad_steps = int(state["grad_steps"])


class StackedLearner:
    """The learning of a pack's runs in one step: their networks stacked on the owner axis
    (`AgentNets(runs=R)`), one backward, one per-owner clip, one RMSprop step, one target
    sync per run when its own counter says so.

    Each run keeps its `Learner` (its record: networks, target, optimiser state, counter):
    their parameters become views of the stack's, so acting with a run's own `Policy` and its
    checkpoint (`export` first, for the optimiser state) see the live values. The runs must
    share the learner's hyperparameters; per owner everything is as in the run's own step
    (elementwise RMSprop, per-owner clip, per-run loss normalisation), so a stacked step
    equals the runs' own steps up to float rounding (tests/learner/test_stack.py)."""

    def __init__(self, learners: list[Learner]):
        first = learners[0]
        for other in learners[1:]:
            if _hyper(other) != _hyper(first):
                raise ValueError("the runs of a stack must share the learner's hyperparameters")
        nets, R = first.nets, len(learners)
        with torch.random.fork_rng(devices=[]):  # the stack's own init is overwritten below
            stacked = AgentNets(
                nets.layout,
                nets.n_agents,
                nets.obs_size,
                nets.n_actions,
                nets.hidden,
                nets.msg_hidden,
                nets.msg_dim,
                kernel=nets.q.kernel,
                runs=R,
            ).to(first.device, first.params[0].dtype)
        group = first.optimizer.param_groups[0]
        self.core = Learner(
            stacked,
            lr=group["lr"],
            rms_alpha=group["alpha"],
            rms_eps=group["eps"],
            gamma=first.gamma,
            grad_clip=first.grad_clip,
            target_update=first.target_update,
            target_unroll=first.target_unroll,
        )
        self.learners, self.G = learners, nets.owners
        core = self.core
        pairs = [(core.params, [lr.params for lr in learners])]
        pairs.append(
            (list(core.target.parameters()), [list(lr.target.parameters()) for lr in learners])
        )
        with torch.no_grad():
            for stack, runs in pairs:
                for i, p in enumerate(stack):
                    p.copy_(torch.cat([ps[i].detach() for ps in runs]))
                    for r, ps in enumerate(runs):
                        ps[i].data = p.data[r * self.G : (r + 1) * self.G]
        # optimiser state: each run's RMSprop averages, zeros where a run has none yet
        states = [[lr.optimizer.state.get(p, {}) for p in lr.params] for lr in learners]
        if any(st for run in states for st in run):
            for i, p in enumerate(core.params):
                parts = [run[i].get("square_avg") for run in states]
                avg = torch.cat([torch.zeros_like(p[: self.G]) if a is None else a for a in parts])
                core.optimizer.state[p] = {"step": torch.tensor(0.0), "square_avg": avg}

    def train_step(self, batches: list[Batch | None]) -> Tensor:
        """One iteration for every run with a batch (None: a run that has stopped, whose
        owners get no gradient and are not synced). Returns each run's mean loss over its
        owners (R,), detached."""
        core, R = self.core, len(self.learners)
        empty = _empty_batch(next(b for b in batches if b is not None))
        b = stack_batches(
            [empty if x is None else x for x in batches], core.device, core.params[0].dtype
        )
        losses = core.losses(b)
        core.optimizer.zero_grad(set_to_none=False)
        losses.sum().backward()
        clip_grad_norm_per_owner(core.params, core.grad_clip)
        core.optimizer.step()
        target = list(core.target.parameters())
        with torch.no_grad():
            for r, (learner, batch) in enumerate(zip(self.learners, batches, strict=True)):
                if batch is None:
                    continue
                if learner.grad_steps > 0 and learner.grad_steps % learner.target_update == 0:
                    rows = slice(r * self.G, (r + 1) * self.G)
                    for t, p in zip(target, core.params, strict=True):
                        t[rows] = p[rows]
                learner.grad_steps += 1
        return losses.detach().view(R, self.G).mean(1)

    def export(self, r: int) -> None:
        """Write run r's part of the optimiser state into its own Learner (before its
        checkpoint is saved); its networks and target are views, always current."""
        learner, rows = self.learners[r], slice(r * self.G, (r + 1) * self.G)
        for p, own in zip(self.core.params, learner.params, strict=True):
            st = self.core.optimizer.state.get(p)
            if st:
                step = torch.tensor(float(learner.grad_steps))
                learner.optimizer.state[own] = {
                    "step": step,
                    "square_avg": st["square_avg"][rows].clone(),
                }


def _hyper(learner: Learner) -> tuple:
    g = learner.optimizer.param_groups[0]
    return (
        g["lr"],
        g["alpha"],
        g["eps"],
        learner.gamma,
        learner.grad_clip,
        learner.target_update,
        learner.target_unroll,
    )


def _empty_batch(like: Batch) -> Batch:
    """A batch with no valid step (mask 0) of `like`'s batch size, one step long."""
    B = like.mask.shape[0]
    return Batch(
        obs=np.zeros((B, 2, *like.obs.shape[2:]), like.obs.dtype),
        avail=np.zeros((B, 2, *like.avail.shape[2:]), like.avail.dtype),
        actions=np.zeros((B, 1, *like.actions.shape[2:]), like.actions.dtype),
        reward=np.zeros((B, 1), like.reward.dtype),
        terminal=np.zeros((B, 1), like.terminal.dtype),
        mask=np.zeros((B, 1), like.mask.dtype),
    )
