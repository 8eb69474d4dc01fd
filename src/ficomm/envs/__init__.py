"""Environments behind one protocol (`base.MultiAgentEnv` / `base.VectorEnv`) and a registry
from config names to constructors. Backends are imported lazily so that optional
dependencies (jaxmarl, smac) are needed only when used."""

from __future__ import annotations

import importlib
from typing import Any

from ficomm.envs.base import ConfigError, EnvInfo, MultiAgentEnv, Step, VectorEnv

# (env name, backend) -> "module:callable" for a single episode and for the vector form.
_REGISTRY: dict[tuple[str, str], tuple[str, str | None]] = {
    ("predator_prey", "native"): (
        "ficomm.envs.predator_prey:PredatorPrey",
        "ficomm.envs.predator_prey:VectorPredatorPrey",
    ),
    ("3s_vs_5z", "smax"): ("ficomm.envs.smax:SmaxEnv", "ficomm.envs.smax:VectorSmaxEnv"),
    ("3s_vs_5z", "sc2"): ("ficomm.envs.sc2:SC2Env", None),
}

ENV_NAMES = sorted({name for name, _ in _REGISTRY})


def backends_for(env: str) -> list[str]:
    """The backends that can run `env`."""
    return sorted(b for name, b in _REGISTRY if name == env)


def _resolve(env: str, backend: str, vector: bool):
    if env not in ENV_NAMES:
        raise ConfigError(f"env: unknown environment {env!r}; choose one of {ENV_NAMES}")
    if (env, backend) not in _REGISTRY:
        raise ConfigError(
            f"backend: {backend!r} cannot run env {env!r}; choose one of {backends_for(env)}"
        )
    target = _REGISTRY[(env, backend)][1 if vector else 0]
    if target is None:
        raise ConfigError(f"backend: {backend!r} has no vectorised form for env {env!r}")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def make_env(env: str, backend: str, seed: int | None = None, **params: Any) -> MultiAgentEnv:
    """Build one episode-at-a-time environment from its config name and backend."""
    return _resolve(env, backend, vector=False)(seed=seed, **params)


def make_vector_env(
    env: str, backend: str, num_envs: int, seed: int | None = None, **params: Any
) -> VectorEnv:
    """Build `num_envs` independent episodes stepped at once."""
    return _resolve(env, backend, vector=True)(num_envs=num_envs, seed=seed, **params)


__all__ = [
    "ConfigError",
    "EnvInfo",
    "MultiAgentEnv",
    "Step",
    "VectorEnv",
    "ENV_NAMES",
    "backends_for",
    "make_env",
    "make_vector_env",
]
