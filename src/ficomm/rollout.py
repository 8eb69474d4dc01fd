"""Acting: epsilon-greedy training episodes and greedy evaluation.

Every step is one batched forward of all agents (and, in evaluation, of all episodes) in
inference mode; messages are same-step (computed from o_t inside the forward, before acting).
"""

from __future__ import annotations

import copy
import ctypes

import numpy as np
import torch

from ficomm.buffer import Episode
from ficomm.envs.base import MultiAgentEnv, SingleEnvs, VectorEnv
from ficomm.kernels.functions import fused_kernel
from ficomm.methods import BLOCK_KINDS
from ficomm.nets import AgentNets

MAX_REPLAYS = 2  # replays of an interrupted evaluation episode before giving up


class Policy:
    """Q-values of all agents for B episodes at one step, carrying the recurrent state.

    Acting runs the training networks in one of their two implementations: the compiled
    kernel's acting step (CPU, float32, where the networks' `kernel` allows it), which reads
    the parameters' own storage and the input layout `AgentNets.blocks`; else one step of
    `AgentNets.unroll` under torch.no_grad (the torch layers: GPU, kernel=torch). Either
    way every optimizer step is seen at once. tests/learner checks both against
    `AgentNets.unroll` over whole episodes. The attention channel has no kernel: its networks
    run on the torch layers (their `kernel` is "torch"), so acting takes the torch step.
    Networks of several runs stacked (`AgentNets.runs` > 1) act on the torch step too, all
    runs in one forward: the kernel's acting step passes messages between all its agents.
    """

    def __init__(self, nets: AgentNets):
        self.nets = nets
        self.n = nets.agents
        first = next(nets.parameters())
        self.lib = None
        if first.device.type == "cpu" and first.dtype == torch.float32 and nets.runs == 1:
            self.lib = fused_kernel(nets.q.kernel, first)
        # the input layout as the kernel reads it: (kind, first column, width) per block
        blocks = [v for b in nets.blocks for v in (BLOCK_KINDS.index(b.kind), b.start, b.width)]
        self._blocks = (ctypes.c_int * len(blocks))(*blocks)
        # one-hot last actions for the torch step; row A (index -1: no action yet) is zeros
        self.eye = torch.eye(nets.n_actions + 1, nets.n_actions, dtype=first.dtype)
        self.eye = self.eye.to(first.device)

    def start(self, batch: int) -> None:
        nets = self.nets
        self.last_idx = np.full((batch, self.n), -1, np.int32)  # -1: no action yet
        if self.lib is None:
            self.h = nets.initial_hidden(batch)
            return
        self.h = np.zeros((nets.owners, nets.per_owner * batch, nets.hidden), np.float32)
        self._bind_kernel(batch)

    def _bind_kernel(self, batch: int) -> None:
        nets, L = self.nets, self.nets.layout
        q = nets.q
        msg = [None] * 6  # no message net: null pointers, never read
        if L.comm:
            msg = [t for fc in (nets.msg.fc1, nets.msg.fc2, nets.msg.fc3) for t in fc.parameters()]
        tensors = msg + [q.fc1.weight, q.fc1.bias, q.gru.w_ih, q.gru.b_ih, q.gru.w_hh, q.gru.b_hh]
        tensors += [q.fc2.weight, q.fc2.bias]
        ptrs = [None if t is None else t.data_ptr() for t in tensors]  # live parameter storage
        self._params = (ctypes.c_void_p * 14)(*ptrs)
        M = nets.msg.fc1.weight.shape[-1] if L.comm else 0  # 0: no message net
        G, R, F = nets.owners, nets.per_owner * batch, nets.in_features
        A, H, D = nets.n_actions, nets.hidden, nets.msg_dim
        dims = (G, nets.per_owner, batch, nets.obs_size, A, H, M, D, F, len(self._blocks) // 3)
        self._dims = (ctypes.c_int * 10)(*dims)
        size = batch * self.n * D + R * F + R * max(M, H) + R * M + 6 * R * H + R * max(D, A)
        self._scratch = np.empty(size, np.float32)
        self._q = np.empty((batch, self.n, A), np.float32)
        # fixed buffers: their addresses are taken once (h and last_idx are updated in place)
        self._args = [a.ctypes.data for a in (self.last_idx, self.h, self._q)]
        self._args += [ctypes.addressof(self._params), self._scratch.ctypes.data]

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """obs (B, n, obs) -> Q (B, n, A); updates the hidden state."""
        if self.lib is not None:
            o = np.ascontiguousarray(obs, np.float32)
            self.lib.ficomm_policy_step_f32(self._dims, self._blocks, o.ctypes.data, *self._args)
            return self._q.copy()
        with torch.no_grad():
            eye = self.eye
            o = torch.as_tensor(obs, dtype=eye.dtype, device=eye.device)
            last = eye[torch.as_tensor(self.last_idx, dtype=torch.long, device=eye.device)]
            # (B, n, .) -> agent-major (n, T=1, B, .)
            o, last = (t.transpose(0, 1).unsqueeze(1).contiguous() for t in (o, last))
            q, self.h = self.nets.unroll(o, last, self.h)
            return q[:, 0].transpose(0, 1).cpu().numpy()

    def record(self, actions: np.ndarray) -> None:
        """The executed actions (B, n) become the next step's last-action input."""
        self.last_idx[...] = actions


def greedy(q: np.ndarray, avail: np.ndarray) -> np.ndarray:
    """Argmax over available actions; ties go to the lowest index."""
    return np.where(avail, q, -np.inf).argmax(-1)


class EpsilonSchedule:
    """1.0 for the first action, then minus (start - end) / anneal after every training env
    step while above `end` (it settles just below `end`, as in the authors' code)."""

    def __init__(self, start: float, end: float, anneal: int, value: float | None = None):
        self.end, self.delta = end, (start - end) / anneal
        self.value = start if value is None else value

    def step(self) -> None:
        if self.value > self.end:
            self.value -= self.delta


def collect_episode(
    env: MultiAgentEnv,
    policy: Policy,
    ep: Episode,
    eps: EpsilonSchedule,
    rng: np.random.Generator,
    seed: int,
    timelimit_terminal: bool,
) -> float:
    """Play one epsilon-greedy episode into `ep`; returns the team return (one run of
    `collect_episodes`)."""
    return collect_episodes(
        SingleEnvs([env]), [policy], [ep], [eps], [rng], [seed], timelimit_terminal
    )[0]


class RunPolicies:
    """The acting of a pack's runs, one `Policy` (own networks) per run."""

    def __init__(self, policies: list[Policy]):
        self.policies = policies

    def start(self) -> None:
        for policy in self.policies:
            policy.start(1)

    def q_values(self, live: np.ndarray, obs: np.ndarray) -> list[np.ndarray | None]:
        """obs (R, n, obs) -> Q (n, A) of each live run (None for the others)."""
        q: list[np.ndarray | None] = [None] * len(self.policies)
        for b in live:
            q[b] = self.policies[b].q_values(obs[b][None])[0]
        return q

    def record(self, live: np.ndarray, actions: np.ndarray) -> None:
        for b in live:
            self.policies[b].record(actions[b][None])


class StackedPolicy:
    """The acting of a pack whose runs' networks are stacked on the owner axis
    (`AgentNets.runs` = R): one forward of every run's agents per env step, whichever runs
    are still playing. `rows` are the stack's runs this acting plays, in order (the runs
    still training)."""

    def __init__(self, nets: AgentNets):
        self.policy = Policy(nets)
        self.R, self.n = nets.runs, nets.n_agents
        self.rows = list(range(self.R))

    def select(self, rows: list[int]) -> StackedPolicy:
        """The same acting (one policy, one hidden state) for these runs of the stack only."""
        other = copy.copy(self)
        other.rows = list(rows)
        return other

    def start(self) -> None:
        self.policy.start(1)

    def q_values(self, live: np.ndarray, obs: np.ndarray) -> np.ndarray:
        full = np.zeros((self.R, self.n, obs.shape[-1]), obs.dtype)
        full[self.rows] = obs
        q = self.policy.q_values(full.reshape(1, self.R * self.n, -1))[0]
        return q.reshape(self.R, self.n, -1)[self.rows]

    def record(self, live: np.ndarray, actions: np.ndarray) -> None:
        self.policy.last_idx.reshape(self.R, self.n)[self.rows] = actions


def collect_episodes(
    env: VectorEnv,
    policies: list[Policy] | StackedPolicy,
    episodes: list[Episode],
    schedules: list[EpsilonSchedule],
    rngs: list[np.random.Generator],
    seeds: list[int],
    timelimit_terminal: bool,
    lanes: list[int] | None = None,
) -> list[float]:
    """Play one epsilon-greedy episode per run of a pack, all at once: episode `lanes[b]` of
    `env` (default: b) belongs to run b (its policy, epsilon schedule, random stream and seed).
    A run whose episode has ended waits, frozen, for the others, and every run draws the same
    random numbers in the same order as it would alone, so each episode is the one the run
    would play on its own. Lanes that belong to no run (runs of the pack that have finished)
    play a throwaway episode, so the env keeps its batch size (SMAX compiles once per batch
    size). `policies`: one per run, or the runs' stacked networks acting at once. Returns the
    team return of each run's episode."""
    acting = policies if isinstance(policies, StackedPolicy) else RunPolicies(policies)
    R, n, limit = len(episodes), env.info.n_agents, env.info.episode_limit
    lanes = list(range(R)) if lanes is None else list(lanes)
    lane_seeds = [seeds[0]] * env.num_envs
    for b, lane in enumerate(lanes):
        lane_seeds[lane] = seeds[b]
    s = env.reset(seeds=lane_seeds)
    acting.start()
    live = np.ones(R, bool)
    totals = [0.0] * R
    # ended and throwaway episodes get each agent's first available action
    actions = s.avail.argmax(-1).astype(np.int64)
    for t in range(limit):
        playing = np.flatnonzero(live)
        q = acting.q_values(playing, s.obs[lanes])
        for b in playing:
            lane = lanes[b]
            ep, obs, avail, rng = episodes[b], s.obs[lane], s.avail[lane], rngs[b]
            ep.obs[t], ep.avail[t] = obs, avail
            act = greedy(q[b], avail)
            explore = rng.random(n) < schedules[b].value
            if explore.any():
                # uniform over available actions: the argmax of uniform noise on the mask
                rand = (rng.random(avail.shape) * avail).argmax(-1)
                act = np.where(explore, rand, act)
            actions[lane] = act
        s = env.step(actions)
        interrupted = s.info.get("interrupted", np.zeros(env.num_envs, bool))
        acting.record(playing, actions[lanes])
        for b in playing:
            ep, lane = episodes[b], lanes[b]
            ep.actions[t], ep.reward[t] = actions[lane], s.reward[lane]
            # A step the game did not finish (the real-SC2 adapter's "interrupted": the game
            # crashed and was relaunched) is never a terminal, whatever timelimit_terminal says.
            cut = bool(s.truncated[lane]) and not bool(interrupted[lane])
            ep.terminal[t] = bool(s.terminated[lane]) or (cut and timelimit_terminal)
            totals[b] += float(s.reward[lane])
            schedules[b].step()
            if s.terminated[lane] or s.truncated[lane]:
                ep.obs[t + 1], ep.avail[t + 1] = s.obs[lane], s.avail[lane]
                ep.length = t + 1
                live[b] = False
        idle = np.ones(env.num_envs, bool)
        idle[[lanes[b] for b in np.flatnonzero(live)]] = False
        actions[idle] = s.avail[idle].argmax(-1)
        if not live.any():
            return totals
    raise RuntimeError(f"episode did not end within the episode limit {limit}")


def evaluate(
    env: VectorEnv | MultiAgentEnv, policy: Policy, episodes: int, seed: int, trace: bool = False
) -> dict[str, np.ndarray]:
    """Greedy episodes (epsilon 0), nothing stored. A VectorEnv runs all episodes in one
    batched forward per step; a single env runs them one after another, and an episode the
    game interrupted (real SC2: a crash) is played again with the same seed, so it is never
    counted as a loss; `interrupted` counts the replays per episode. A policy with an
    `episode` attribute (an intervention, ficomm.listening) is told which episode it plays.

    trace=True also returns what was played, time-major and padded to the longest episode:
    "obs" (T, B, n, obs), "avail" (T, B, n, A), "actions" (T, B, n)."""
    if isinstance(env, VectorEnv):
        return _evaluate_batch(env, policy, seed, trace)
    parts = []
    for i in range(episodes):
        if hasattr(policy, "episode"):
            policy.episode = i
        replays = 0
        while (
            (part := _evaluate_batch(_Single(env), policy, seed + i, trace))
            .pop("interrupted")
            .any()
        ):
            replays += 1
            if replays > MAX_REPLAYS:
                raise RuntimeError(
                    f"evaluation episode {i} was interrupted {replays} times in a row (the game "
                    "keeps crashing); check the StarCraft II install and the machine's memory"
                )
        parts.append({**part, "interrupted": np.asarray([replays])})
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k not in TRACE}
    if trace:
        T = max(p["obs"].shape[0] for p in parts)
        for k in TRACE:
            padded = [
                np.pad(p[k], [(0, T - len(p[k]))] + [(0, 0)] * (p[k].ndim - 1)) for p in parts
            ]
            out[k] = np.concatenate(padded, axis=1)
    return out


TRACE = ("obs", "avail", "actions")  # what evaluate(trace=True) adds


def evaluation_columns(res: dict[str, np.ndarray], has_win: bool) -> dict[str, float | None]:
    """The evaluation's columns of metrics.csv from `evaluate`'s result."""
    row = {
        "eval_return_mean": float(res["return"].mean()),
        "eval_return_std": float(res["return"].std()),
        "eval_win_rate": float(res["won"].mean()) if has_win else None,
        "eval_length_mean": float(res["length"].mean()),
    }
    if "captures" in res:
        row["eval_captures_mean"] = float(res["captures"].mean())
    return row


def _evaluate_batch(env, policy: Policy, seed: int, trace: bool = False) -> dict[str, np.ndarray]:
    s = env.reset(seed=seed)
    B = s.obs.shape[0]
    policy.start(B)
    returns = np.zeros(B)
    lengths = np.zeros(B, np.int64)
    won = np.zeros(B, bool)
    interrupted = np.zeros(B, bool)
    captures = np.zeros(B)  # PredatorPrey reports captured prey per episode
    done = np.zeros(B, bool)
    steps: dict[str, list] = {k: [] for k in TRACE}
    while not done.all():
        actions = greedy(policy.q_values(s.obs), s.avail)
        if trace:
            for k, v in zip(TRACE, (s.obs, s.avail, actions), strict=True):
                steps[k].append(np.asarray(v))
        s = env.step(actions)
        policy.record(actions)
        returns += np.where(done, 0.0, s.reward)
        lengths += ~done
        now_done = np.asarray(s.terminated) | np.asarray(s.truncated)
        ended = now_done & ~done
        if "won" in s.info:
            won |= np.asarray(s.info["won"], bool) & ended
        if "interrupted" in s.info:
            interrupted |= np.asarray(s.info["interrupted"], bool) & ended
        if "captures" in s.info:
            captures = np.where(ended, np.asarray(s.info["captures"], float), captures)
        done |= now_done
    out = {"return": returns, "length": lengths, "won": won, "interrupted": interrupted}
    if "captures" in s.info:
        out["captures"] = captures
    if trace:
        out.update({k: np.stack(v) for k, v in steps.items()})
    return out


class _Single:
    """A MultiAgentEnv seen as a vector env of one episode."""

    def __init__(self, env: MultiAgentEnv):
        self.env = env

    def _wrap(self, s):
        info = {k: np.asarray([v]) for k, v in s.info.items()}
        return s._replace(
            obs=s.obs[None],
            avail=s.avail[None],
            reward=np.asarray([s.reward]),
            terminated=np.asarray([s.terminated]),
            truncated=np.asarray([s.truncated]),
            info=info,
        )

    def reset(self, seed: int):
        return self._wrap(self.env.reset(seed=seed))

    def step(self, actions):
        return self._wrap(self.env.step(actions[0]))
