"""Environments behind one protocol (`base.MultiAgentEnv` / `base.VectorEnv`) and one registry:
each environment is one `EnvSpec` that carries everything the rest of ficomm asks about it
(backends and their constructors, metric, titles, maximum return, budgets, its outcome
basins, and the memory and speed the SLURM rules size jobs by). Config, analysis,
figures and the Snakemake rules read it; `register_env` adds one (see docs/environments.md).

Backends are imported lazily so that optional dependencies (jaxmarl, smac) are needed only
when used, and so that the analysis (which reads titles and metrics here) never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ficomm.envs.base import ConfigError, EnvInfo, MultiAgentEnv, Step, VectorEnv


@dataclass(frozen=True)
class BackendSpec:
    """One simulator of an environment."""

    title: str  # "StarCraft II", named next to the environment in every figure
    single: str | Any  # "module:callable" (or the callable) for one episode at a time
    vector: str | Any | None = None  # the same for many episodes at once; None: none
    max_return: float | None = None  # largest team return an episode can reach
    mem_mb: int = 2000  # memory a training job requests
    steps_per_second: float = 100.0  # rough single-core training speed (sizes run-time requests)


@dataclass(frozen=True)
class EnvSpec:
    """Everything ficomm knows about one environment."""

    name: str
    title: str
    backends: dict[str, BackendSpec]
    default_backend: str
    default_budget: int  # env steps per run (the paper's)
    metric: str  # the metrics.csv column the environment is judged by
    metric_label: str
    basins: bool = False  # PredatorPrey's capture / avoid / penalised outcome classes


_ENVS: dict[str, EnvSpec] = {}
ENV_NAMES: list[str] = []  # kept sorted; updated in place by register_env


def register_env(spec: EnvSpec) -> EnvSpec:
    """Add (or replace) an environment; every part of ficomm sees it from then on."""
    if spec.default_backend not in spec.backends:
        raise ConfigError(
            f"{spec.name}: default_backend {spec.default_backend!r} is not one of its backends "
            f"{sorted(spec.backends)}"
        )
    _ENVS[spec.name] = spec
    ENV_NAMES[:] = sorted(_ENVS)
    return spec


register_env(
    EnvSpec(
        name="predator_prey",
        title="PredatorPrey 7x7",
        backends={
            "native": BackendSpec(
                title="native",
                single="ficomm.envs.predator_prey:PredatorPrey",
                vector="ficomm.envs.predator_prey:VectorPredatorPrey",
                max_return=40.0,  # both prey captured by all 4 agents at once: 2 x 4 x 5
                mem_mb=2000,
                steps_per_second=250,
            )
        },
        default_backend="native",
        default_budget=1_000_000,
        metric="eval_return_mean",
        metric_label="team return (sum over 4 agents)",
        basins=True,
    )
)
register_env(
    EnvSpec(
        name="3s_vs_5z",
        title="3s_vs_5z",
        backends={
            "smax": BackendSpec(
                title="SMAX",
                single="ficomm.envs.smax:SmaxEnv",
                vector="ficomm.envs.smax:VectorSmaxEnv",
                max_return=2.0,
                mem_mb=4000,
                steps_per_second=150,
            ),
            "sc2": BackendSpec(
                title="StarCraft II",
                single="ficomm.envs.sc2:SC2Env",
                max_return=20.0,
                mem_mb=8000,
                steps_per_second=60,
            ),
        },
        default_backend="sc2",
        default_budget=3_000_000,
        metric="eval_win_rate",
        metric_label="test win rate (fraction of episodes)",
    )
)


def env_spec(env: str) -> EnvSpec:
    """The registry entry of `env`; an unknown name raises ConfigError naming the choices."""
    if env not in _ENVS:
        raise ConfigError(f"env: unknown environment {env!r}; choose one of {ENV_NAMES}")
    return _ENVS[env]


def backends_for(env: str) -> list[str]:
    """The backends that can run `env` (none for an unknown env)."""
    return sorted(_ENVS[env].backends) if env in _ENVS else []


def backend_spec(env: str, backend: str) -> BackendSpec:
    spec = env_spec(env)
    if backend not in spec.backends:
        raise ConfigError(
            f"backend: {backend!r} cannot run env {env!r}; choose one of {backends_for(env)}"
        )
    return spec.backends[backend]


def _resolve(env: str, backend: str, vector: bool):
    target = getattr(backend_spec(env, backend), "vector" if vector else "single")
    if target is None:
        raise ConfigError(f"backend: {backend!r} has no vectorised form for env {env!r}")
    if not isinstance(target, str):
        return target
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
    "BackendSpec",
    "ConfigError",
    "EnvInfo",
    "EnvSpec",
    "MultiAgentEnv",
    "Step",
    "VectorEnv",
    "ENV_NAMES",
    "backend_spec",
    "backends_for",
    "env_spec",
    "make_env",
    "make_vector_env",
    "register_env",
]
