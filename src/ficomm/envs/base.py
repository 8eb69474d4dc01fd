"""The environment protocol every learner-facing environment implements.

One episode (`MultiAgentEnv`) or many independent episodes stepped at once (`VectorEnv`).
Arrays in, arrays out; the team reward is one scalar per episode; `terminated` (the task
ended) is kept apart from `truncated` (the episode limit was hit).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what to do."""


@dataclass(frozen=True)
class EnvInfo:
    """Static sizes of an environment, as the learner needs them."""

    n_agents: int
    n_actions: int
    obs_size: int
    state_size: int
    episode_limit: int
    has_win: bool  # True where the environment reports a win flag (SMAC); False for PredatorPrey


class Step(NamedTuple):
    """What `reset` and `step` return.

    Single episode: obs (n_agents, obs_size) float32, state (state_size,) float32,
    avail (n_agents, n_actions) bool, reward float, terminated bool, truncated bool,
    info dict (key "won" -> bool where the env has wins).
    Vector form: the same fields with a leading batch axis B (reward, terminated, truncated
    are (B,) arrays; info values are (B,) arrays).
    `reset` returns reward 0 and terminated = truncated = False.
    """

    obs: np.ndarray
    state: np.ndarray
    avail: np.ndarray
    reward: Any
    terminated: Any
    truncated: Any
    info: dict


class MultiAgentEnv(ABC):
    """One episode at a time."""

    info: EnvInfo
    backend: str  # recorded in run configs, metrics and W&B tags ("native", "smax", "sc2")

    @abstractmethod
    def reset(self, seed: int | None = None) -> Step:
        """Start a new episode. A seed re-seeds the environment's random stream."""

    @abstractmethod
    def step(self, actions: np.ndarray) -> Step:
        """Apply one joint action (n_agents,) of ints. Raises ValueError on an invalid action."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release external resources (a StarCraft II process, say)."""


class VectorEnv(ABC):
    """B independent episodes stepped at once, without auto-reset.

    After an episode ends it stays frozen: further `step` calls ignore its actions and return
    reward 0 with its done flags kept. `done` gives the (B,) mask of finished episodes.
    """

    info: EnvInfo
    backend: str
    num_envs: int

    @abstractmethod
    def reset(self, seed: int | None = None, seeds: Any = None) -> Step:
        """Start B new episodes; `seeds` (one per episode) seeds episode b as the single env's
        `reset(seed=seeds[b])` would."""

    @abstractmethod
    def step(self, actions: np.ndarray) -> Step:
        """Apply joint actions (B, n_agents)."""

    @property
    @abstractmethod
    def done(self) -> np.ndarray:
        """(B,) bool: which episodes have terminated or been truncated."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release external resources."""


class SingleEnvs(VectorEnv):
    """Several one-episode environments seen as one VectorEnv (for simulators without a
    vectorised form, such as real StarCraft II): stepped one after another, with the same
    frozen-episode rule; `reset(seeds=...)` resets episode b with `seeds[b]`."""

    def __init__(self, envs: list[MultiAgentEnv]):
        self.envs = list(envs)
        self.num_envs = len(self.envs)
        self.info, self.backend = self.envs[0].info, self.envs[0].backend
        self._last: list[Step] = []
        self._done = np.ones(self.num_envs, bool)

    @property
    def done(self) -> np.ndarray:
        return self._done.copy()

    def reset(self, seed: int | None = None, seeds: Any = None) -> Step:
        if seeds is None:
            seeds = [None if seed is None else seed + b for b in range(self.num_envs)]
        seeds = list(seeds)
        if len(seeds) != self.num_envs:
            raise ConfigError(
                f"seeds: expected {self.num_envs} (one per episode), got {len(seeds)}"
            )
        self._last = [env.reset(seed=s) for env, s in zip(self.envs, seeds, strict=True)]
        self._done[:] = False
        return self._stack(self._last)

    def step(self, actions: np.ndarray) -> Step:
        steps = []
        for b, env in enumerate(self.envs):
            if self._done[b]:  # frozen: previous observation and flags, reward 0
                steps.append(self._last[b]._replace(reward=0.0))
                continue
            s = env.step(np.asarray(actions[b]))
            self._done[b] = bool(s.terminated or s.truncated)
            steps.append(s)
        self._last = steps
        return self._stack(steps)

    @staticmethod
    def _stack(steps: list[Step]) -> Step:
        keys = dict.fromkeys(k for s in steps for k in s.info)
        info = {k: np.asarray([s.info.get(k, False) for s in steps]) for k in keys}
        return Step(
            np.stack([s.obs for s in steps]),
            np.stack([s.state for s in steps]),
            np.stack([s.avail for s in steps]),
            np.asarray([s.reward for s in steps], np.float32),
            np.asarray([s.terminated for s in steps]),
            np.asarray([s.truncated for s in steps]),
            info,
        )

    def run_facts(self) -> dict[str, Any]:
        facts = getattr(self.envs[0], "run_facts", None)
        return dict(facts()) if callable(facts) else {}

    def close(self) -> None:
        for env in self.envs:
            env.close()
