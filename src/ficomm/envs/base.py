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
    def reset(self, seed: int | None = None) -> Step:
        """Start B new episodes."""

    @abstractmethod
    def step(self, actions: np.ndarray) -> Step:
        """Apply joint actions (B, n_agents)."""

    @property
    @abstractmethod
    def done(self) -> np.ndarray:
        """(B,) bool: which episodes have terminated or been truncated."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release external resources."""
