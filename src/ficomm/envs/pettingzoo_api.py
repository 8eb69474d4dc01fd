"""PettingZoo's parallel API over any `MultiAgentEnv` (PredatorPrey by default).

Agents are named ``f"{prefix}_{i}"``. Each agent's reward is its own entry of
``info["agent_rewards"]`` when the environment reports per-agent rewards (PredatorPrey), else
the team reward. ``infos[agent]["action_mask"]`` holds the available actions (int8). Once an
episode ends every agent is removed from ``agents`` at once (the protocol's episodes end for
the whole team).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv

from ficomm.envs.base import MultiAgentEnv
from ficomm.envs.predator_prey import PredatorPrey


class PettingZooParallelEnv(ParallelEnv):
    """Wrap a `MultiAgentEnv` as a `pettingzoo.ParallelEnv`."""

    metadata = {"name": "ficomm_parallel_v0", "render_modes": []}
    render_mode = None

    def __init__(self, env: MultiAgentEnv, prefix: str = "agent") -> None:
        self.env = env
        info = env.info
        self.possible_agents = [f"{prefix}_{i}" for i in range(info.n_agents)]
        self.agents: list[str] = []
        low, high = getattr(env, "obs_bounds", (-np.inf, np.inf))
        # PettingZoo requires the same space object on every call.
        self._obs_spaces = {
            a: gymnasium.spaces.Box(low, high, (info.obs_size,), np.float32)
            for a in self.possible_agents
        }
        self._act_spaces = {
            a: gymnasium.spaces.Discrete(info.n_actions) for a in self.possible_agents
        }
        self.state_space = gymnasium.spaces.Box(low, high, (info.state_size,), np.float32)
        self._state: np.ndarray | None = None

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Discrete:
        return self._act_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        """Start an episode; a seed re-seeds the environment and the action spaces."""
        if seed is not None:
            for i, agent in enumerate(self.possible_agents):
                self._act_spaces[agent].seed(seed + i)
        step = self.env.reset(seed=seed)
        self.agents = list(self.possible_agents)
        self._state = step.state
        return self._split(step.obs), self._infos(step)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """One joint step; every live agent must act."""
        if not self.agents:
            raise RuntimeError("step: the episode is over; call reset()")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"actions: no action for {missing}")
        joint = np.array([int(actions[a]) for a in self.possible_agents], np.int64)
        step = self.env.step(joint)
        self._state = step.state
        per_agent = step.info.get("agent_rewards")
        rewards = {
            a: float(per_agent[i]) if per_agent is not None else float(step.reward)
            for i, a in enumerate(self.possible_agents)
        }
        terminations = dict.fromkeys(self.possible_agents, bool(step.terminated))
        truncations = dict.fromkeys(self.possible_agents, bool(step.truncated))
        out = (self._split(step.obs), rewards, terminations, truncations, self._infos(step))
        if step.terminated or step.truncated:
            self.agents = []
        return out

    def state(self) -> np.ndarray:
        """The environment's global state after the last reset or step."""
        if self._state is None:
            raise RuntimeError("state: call reset() first")
        return self._state

    def close(self) -> None:
        self.env.close()

    def _split(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}

    def _infos(self, step) -> dict[str, dict]:
        mask = np.asarray(step.avail, np.int8)
        return {a: {"action_mask": mask[i]} for i, a in enumerate(self.possible_agents)}


def parallel_env(seed: int | None = None, **params: Any) -> PettingZooParallelEnv:
    """PredatorPrey (the paper's settings unless overridden) as a PettingZoo ParallelEnv
    with agents ``predator_0..``."""
    env = PettingZooParallelEnv(PredatorPrey(seed=seed, **params), prefix="predator")
    env.metadata = {"name": "ficomm_predator_prey_v0", "render_modes": []}
    return env
