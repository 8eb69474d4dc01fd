"""Acting: epsilon-greedy training episodes and greedy evaluation.

Every step is one batched forward of all agents (and, in evaluation, of all episodes) in
inference mode; messages are same-step (computed from o_t inside the forward, before acting).
"""

from __future__ import annotations

import numpy as np

from ficomm.buffer import Episode
from ficomm.envs.base import MultiAgentEnv, VectorEnv
from ficomm.nets import AgentNets


class Policy:
    """Q-values of all agents for B episodes at one step, carrying the recurrent state.

    Acting runs the same networks as training in numpy on float32 views of the parameters
    (on CPU they share memory with the torch tensors, so every optimizer step is seen at
    once; on a GPU `refresh()` copies them after each update). One step is ~25 small numpy
    calls instead of ~45 torch dispatches. tests/learner checks it against `AgentNets.unroll`.
    """

    def __init__(self, nets: AgentNets):
        self.nets = nets
        n, G = nets.n_agents, nets.groups
        self.n, self.G, self.k, self.H = n, G, nets.per_group, nets.hidden
        self.layout = nets.layout
        self.eye = np.eye(nets.n_actions, dtype=np.float32)
        self.ids = np.eye(n, dtype=np.float32)[:, None, :]  # (n, 1, n)
        self.others = np.array([[j for j in range(n) if j != i] for i in range(n)])
        self.shared_memory = next(nets.parameters()).device.type == "cpu"
        self.refresh()

    def refresh(self) -> None:
        """Take the current parameters (a no-op on CPU, where they are shared)."""
        if self.shared_memory and hasattr(self, "w"):
            return
        self.w = {k: v.detach().cpu().numpy() for k, v in self.nets.named_parameters()}

    def start(self, batch: int) -> None:
        self.h = np.zeros((self.G, self.k * batch, self.H), np.float32)
        self.last = np.zeros((batch, self.n, self.nets.n_actions), np.float32)

    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        return np.matmul(x, self.w[name + ".weight"]) + self.w[name + ".bias"]

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """obs (B, n, obs) -> Q (B, n, A); updates the hidden state."""
        B, n, G, H, L = obs.shape[0], self.n, self.G, self.H, self.layout
        o = obs.transpose(1, 0, 2)  # agent-major (n, B, obs)
        parts = [o, self.last.transpose(1, 0, 2)]
        if L.agent_id:
            parts.append(np.broadcast_to(self.ids, (n, B, n)))
        if L.comm:
            x = o.reshape(G, -1, o.shape[-1])
            x = np.maximum(self._linear("msg.fc1", x), 0)
            x = np.maximum(self._linear("msg.fc2", x), 0)
            m = self._linear("msg.fc3", x).reshape(n, B, -1)
            parts.append(m[self.others].transpose(0, 2, 1, 3).reshape(n, B, -1))
            if L.own_message:
                parts.append(m)
        x = np.concatenate(parts, -1).reshape(G, self.k * B, -1)
        w = self.w
        gi = np.matmul(np.maximum(self._linear("q.fc1", x), 0), w["q.gru.w_ih"]) + w["q.gru.b_ih"]
        gh = np.matmul(self.h, w["q.gru.w_hh"]) + w["q.gru.b_hh"]
        rz = 0.5 + 0.5 * np.tanh(0.5 * (gi[..., : 2 * H] + gh[..., : 2 * H]))  # sigmoid
        r, z = rz[..., :H], rz[..., H:]
        cand = np.tanh(gi[..., 2 * H :] + r * gh[..., 2 * H :])
        self.h = cand + z * (self.h - cand)
        q = self._linear("q.fc2", self.h)  # (G, k*B, A)
        return q.reshape(n, B, -1).transpose(1, 0, 2)

    def record(self, actions: np.ndarray) -> None:
        """The executed actions (B, n) become the next step's last-action input."""
        self.last = self.eye[actions]


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
    """Play one epsilon-greedy episode into `ep`; returns the team return."""
    s = env.reset(seed=seed)
    policy.start(1)
    n, limit = env.info.n_agents, env.info.episode_limit
    total = 0.0
    for t in range(limit):
        ep.obs[t], ep.avail[t] = s.obs, s.avail
        q = policy.q_values(s.obs[None])[0]
        actions = greedy(q, s.avail)
        explore = rng.random(n) < eps.value
        if explore.any():
            # uniform over available actions: the argmax of uniform noise on the mask
            rand = (rng.random(s.avail.shape) * s.avail).argmax(-1)
            actions = np.where(explore, rand, actions)
        s = env.step(actions)
        policy.record(actions[None])
        ep.actions[t], ep.reward[t] = actions, s.reward
        ep.terminal[t] = s.terminated or (s.truncated and timelimit_terminal)
        total += float(s.reward)
        eps.step()
        if s.terminated or s.truncated:
            break
    else:
        raise RuntimeError(f"episode did not end within the episode limit {limit}")
    ep.obs[t + 1], ep.avail[t + 1] = s.obs, s.avail
    ep.length = t + 1
    return total


def evaluate(
    env: VectorEnv | MultiAgentEnv, policy: Policy, episodes: int, seed: int
) -> dict[str, np.ndarray]:
    """Greedy episodes (epsilon 0), nothing stored. A VectorEnv runs all episodes in one
    batched forward per step; a single env runs them one after another."""
    if isinstance(env, VectorEnv):
        return _evaluate_batch(env, policy, seed)
    parts = [_evaluate_batch(_Single(env), policy, seed + i) for i in range(episodes)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _evaluate_batch(env, policy: Policy, seed: int) -> dict[str, np.ndarray]:
    s = env.reset(seed=seed)
    B = s.obs.shape[0]
    policy.start(B)
    returns = np.zeros(B)
    lengths = np.zeros(B, np.int64)
    won = np.zeros(B, bool)
    captures = np.zeros(B)  # PredatorPrey reports captured prey per episode
    done = np.zeros(B, bool)
    while not done.all():
        actions = greedy(policy.q_values(s.obs), s.avail)
        s = env.step(actions)
        policy.record(actions)
        returns += np.where(done, 0.0, s.reward)
        lengths += ~done
        now_done = np.asarray(s.terminated) | np.asarray(s.truncated)
        ended = now_done & ~done
        if "won" in s.info:
            won |= np.asarray(s.info["won"], bool) & ended
        if "captures" in s.info:
            captures = np.where(ended, np.asarray(s.info["captures"], float), captures)
        done |= now_done
    out = {"return": returns, "length": lengths, "won": won}
    if "captures" in s.info:
        out["captures"] = captures
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
