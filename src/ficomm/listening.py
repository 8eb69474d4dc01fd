"""Do agents listen to the messages they get, and do their messages say anything?

Two tests of emergent communication (Lowe et al., "On the Pitfalls of Measuring Emergent
Communication", AAMAS 2019; Jaques et al., "Social Influence as Intrinsic Motivation", ICML
2019), run on a greedy evaluation's episodes:

- **Positive listening** (interventions on what a receiver gets). Each agent's *incoming*
  messages are replaced, its own message untouched, by `zero` (all zeros) or by `swap` (the
  messages the same senders sent at the same time step of another, independent evaluation
  episode: episode b receives episode (b + 1) mod B's, at step min(t, that episode's last
  step); this keeps the messages' distribution and removes their information). Per
  intervention: the team return of the same episodes (same env seeds) played under it, and
  the causal influence of communication, the fraction of agent-steps whose greedy action
  changes when the incoming messages are replaced, on the states of the unmodified episodes
  (both greedy actions computed by the same unroll, so rounding never counts as a change).
- **Positive signalling**: the mutual information (bits) between a sender's message and its
  own greedy action, and between its message and what it sees (the environment's `sight`
  columns of the observation: PredatorPrey, whether any prey is in its view). Messages are
  continuous; each is discretised to the index of its largest component (msg_dim symbols; the
  value half under attention). Estimates are plug-in with the Miller-Madow bias correction
  of each entropy, per sender over its agent-steps, averaged over senders.

Nothing here draws random numbers: interventions never touch a run's training streams.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ficomm.nets import AgentNets
from ficomm.rollout import evaluate, evaluation_columns

INTERVENTIONS = ("zero", "swap")
# metrics.csv columns an evaluation with interventions adds (docs/training.md)
COLUMNS = tuple(
    f"intervene_{kind}_{what}"
    for kind in INTERVENTIONS
    for what in ("return_mean", "action_change")
) + ("signal_action_mi", "signal_sight_mi")


class NoMessages(ValueError):
    """An intervention was asked of a run without a message channel."""


def entropy_mm(counts: np.ndarray) -> float:
    """Miller-Madow entropy (nats) of a histogram: plug-in plus (non-empty bins - 1) / 2N."""
    counts = np.asarray(counts, float).ravel()
    counts = counts[counts > 0]
    n = counts.sum()
    p = counts / n
    return float(-(p * np.log(p)).sum() + (len(counts) - 1) / (2 * n))


def mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """I(X; Y) in bits of two paired discrete samples, each entropy Miller-Madow corrected
    (H(X) + H(Y) - H(X, Y)). Near 0 for independent samples (slightly below: the correction
    of the plug-in's upward bias), log2(k) + (k - 1) / (2N ln 2) for X = Y uniform on k."""
    x, y = np.asarray(x).ravel(), np.asarray(y).ravel()
    if len(x) != len(y) or not len(x):
        raise ValueError("mutual_information: two samples of one non-zero length")
    _, xi = np.unique(x, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((xi.max() + 1, yi.max() + 1))
    np.add.at(joint, (xi, yi), 1)
    hx, hy, hxy = entropy_mm(joint.sum(1)), entropy_mm(joint.sum(0)), entropy_mm(joint)
    return (hx + hy - hxy) / math.log(2)


def _agent_major(x: np.ndarray, dtype: torch.dtype, device) -> torch.Tensor:
    """(T, B, n, ...) numpy -> (n, T, B, ...) tensor."""
    return torch.as_tensor(np.moveaxis(x, 2, 0).copy(), dtype=dtype, device=device)


class Traced:
    """The unmodified episodes of an evaluation, as the networks see them."""

    def __init__(self, nets: AgentNets, res: dict[str, np.ndarray]):
        w = nets.q.fc1.weight
        self.nets, self.lengths = nets, res["length"]
        self.obs = _agent_major(res["obs"], w.dtype, w.device)  # (n, T, B, obs)
        acts = torch.as_tensor(np.moveaxis(res["actions"], 2, 0).copy(), dtype=torch.long)
        self.actions = acts  # (n, T, B)
        eye = torch.eye(nets.n_actions, dtype=w.dtype, device=w.device)
        last = torch.zeros(*acts.shape, nets.n_actions, dtype=w.dtype, device=w.device)
        last[:, 1:] = eye[acts[:, :-1].to(w.device)]  # zeros before the first action
        self.last = last
        self.avail = torch.as_tensor(np.moveaxis(res["avail"], 2, 0).copy()).bool()
        n, T, B = acts.shape
        self.valid = torch.arange(T)[:, None] < torch.as_tensor(self.lengths)[None]  # (T, B)
        with torch.no_grad():
            self.msgs = nets.messages(self.obs)  # (n, T, B, msg_width)

    def incoming(self, kind: str, steps: int) -> torch.Tensor:
        """(n, steps, B, msg_width): what each sender is heard to send under `kind`."""
        n, _, B, W = self.msgs.shape
        if kind == "zero":
            return self.msgs.new_zeros(n, steps, B, W)
        if kind != "swap":
            raise ValueError(f"intervention: {kind!r} is not one of {INTERVENTIONS}")
        donor = (np.arange(B) + 1) % B
        t = np.minimum(np.arange(steps)[:, None], self.lengths[donor][None] - 1)  # (steps, B)
        return self.msgs[:, torch.as_tensor(t), torch.as_tensor(donor)[None]]

    def greedy(self, incoming: torch.Tensor | None = None) -> torch.Tensor:
        """Greedy actions (n, T, B) on the unmodified episodes' states."""
        with torch.no_grad():
            q, _ = self.nets.unroll(self.obs, self.last, incoming=incoming)
        return q.cpu().masked_fill(~self.avail, -math.inf).argmax(-1)

    def action_change(self, kind: str) -> float:
        """Fraction of valid agent-steps whose greedy action the intervention changes."""
        T = self.obs.shape[1]
        changed = self.greedy(self.incoming(kind, T)) != self.greedy()
        return float(changed[:, self.valid].double().mean())

    def signalling(self, sight: tuple[int, int] | None) -> dict[str, float | None]:
        """Mutual information of each sender's message symbol with its action and its sight."""
        D = self.nets.msg_dim
        symbols = self.msgs[..., -D:].argmax(-1).cpu()  # the value half under attention
        mi_action, mi_sight = [], []
        for i in range(symbols.shape[0]):
            sym = symbols[i][self.valid].numpy()
            mi_action.append(mutual_information(sym, self.actions[i][self.valid].numpy()))
            if sight is not None:
                seen = (self.obs[i, ..., sight[0] : sight[1]] > 0).any(-1).cpu()
                mi_sight.append(mutual_information(sym, seen[self.valid].numpy()))
        return {
            "signal_action_mi": float(np.mean(mi_action)),
            "signal_sight_mi": float(np.mean(mi_sight)) if mi_sight else None,
        }


class InterventionPolicy:
    """Greedy acting with every agent's incoming messages replaced (`Policy`'s interface):
    at step t of episode b it hears incoming[:, t, b]. Runs on the torch step of
    `AgentNets.unroll`, which takes the replacement."""

    def __init__(self, nets: AgentNets, incoming: torch.Tensor):
        self.nets, self.incoming = nets, incoming
        self.episode: int | None = None  # set by evaluate() when it plays one at a time
        w = nets.q.fc1.weight
        self.eye = torch.eye(nets.n_actions + 1, nets.n_actions, dtype=w.dtype, device=w.device)

    def start(self, batch: int) -> None:
        all_ = self.incoming.shape[2]
        self.cols = list(range(all_)) if batch == all_ else [self.episode or 0]
        self.t, self.h = 0, None
        self.last_idx = np.full((batch, self.nets.n_agents), -1)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        eye = self.eye
        with torch.no_grad():
            o = torch.as_tensor(obs, dtype=eye.dtype, device=eye.device)
            last = eye[torch.as_tensor(self.last_idx, dtype=torch.long, device=eye.device)]
            o, last = (x.transpose(0, 1).unsqueeze(1).contiguous() for x in (o, last))
            heard = self.incoming[:, self.t : self.t + 1, self.cols]
            q, self.h = self.nets.unroll(o, last, self.h, incoming=heard)
        return q[:, 0].transpose(0, 1).cpu().numpy()

    def record(self, actions: np.ndarray) -> None:
        self.last_idx = np.asarray(actions)
        self.t += 1


def check_messages(nets: AgentNets) -> None:
    if not nets.layout.comm:
        raise NoMessages(
            "interventions: this run has no message channel (comm=false), so there are no "
            "messages to replace; interventions apply to comm=true runs only"
        )


def listening_columns(
    env, nets: AgentNets, res: dict[str, np.ndarray], seed: int, sight: tuple[int, int] | None
) -> dict[str, float | None]:
    """The intervention and signalling columns of one evaluation whose unmodified episodes
    `res` (evaluate(trace=True), env seed `seed`) were just played on `env`."""
    check_messages(nets)
    traced = Traced(nets, res)
    limit = env.info.episode_limit
    row: dict[str, float | None] = {}
    for kind in INTERVENTIONS:
        if kind == "swap" and len(res["return"]) < 2:  # no other episode to take from
            row.update({f"intervene_swap_{w}": None for w in ("return_mean", "action_change")})
            continue
        policy = InterventionPolicy(nets, traced.incoming(kind, limit))
        played = evaluate(env, policy, len(res["return"]), seed)
        row[f"intervene_{kind}_return_mean"] = float(played["return"].mean())
        row[f"intervene_{kind}_action_change"] = traced.action_change(kind)
    row.update(traced.signalling(sight))
    return row


def greedy_evaluation(
    env,
    policy,
    nets: AgentNets,
    episodes: int,
    seed: int,
    *,
    has_win: bool,
    listen: bool,
    sight: tuple[int, int] | None,
    trace: bool = False,
) -> tuple[dict[str, float | None], dict[str, np.ndarray]]:
    """One evaluation's metrics.csv columns (with the intervention and signalling columns
    when `listen`) and `evaluate`'s result (with its trace when `listen` or `trace`)."""
    res = evaluate(env, policy, episodes, seed, trace=listen or trace)
    row = evaluation_columns(res, has_win)
    if listen:
        row.update(listening_columns(env, nets, res, seed, sight))
    return row, res
