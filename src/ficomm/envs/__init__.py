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
from dataclasses import dataclass, field
from typing import Any

from ficomm.envs.base import ConfigError, EnvInfo, MultiAgentEnv, SingleEnvs, Step, VectorEnv


@dataclass(frozen=True)
class BackendSpec:
    """One simulator of an environment."""

    title: str  # "StarCraft II", named next to the environment in every figure
    single: str | Any  # "module:callable" (or the callable) for one episode at a time
    vector: str | Any | None = None  # the same for many episodes at once; None: none
    max_return: float | None = None  # largest team return an episode can reach
    mem_mb: int = 2000  # memory a training job requests
    run_mb: int = 500  # memory each further run of a pack adds (replay buffer, networks)
    steps_per_second: float = 100.0  # rough single-core training speed (sizes run-time requests)
    # Runs per workflow job (a pack, `ficomm train seed=[...]`) by device, where the preset sets
    # none: on a CPU core a pack pays off where stepping the simulator has a fixed cost per call
    # that the pack shares (bench/results/pack.md); on a GPU packs fill the device.
    pack: dict = field(default_factory=lambda: {"cpu": 1, "cuda": 20})


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
    # The environment's own settings, passed to its constructors under the run's env_args
    # (the run's keys win): one simulator serves several entries (PredatorPrey's team sizes).
    env_args: dict[str, Any] = field(default_factory=dict)
    family: str = ""  # entries of one family differ only in team size ("" = the name)
    team_size: int | None = None  # agents per team (x axis of the team-size figures)
    # With basins: the team return of an episode without capture or penalty (every agent pays
    # the step cost for the whole episode), and the half-width of the "avoid" band around it.
    avoid_return: float | None = None
    basin_tol: float | None = None
    # Observation columns obs[start:stop] (a slice: stop may be negative) whose any-nonzero
    # says the agent sees what matters (PredatorPrey: a prey in its view); the signalling
    # test's "sight" (ficomm.listening).
    sight: tuple[int, int] | None = None
    # PredatorPrey's reward for a prey met by a lone predator (the penalty study's axis)
    penalty: float | None = None

    @property
    def family_name(self) -> str:
        return self.family or self.name


_ENVS: dict[str, EnvSpec] = {}
ENV_NAMES: list[str] = []  # kept sorted; updated in place by register_env


def register_env(spec: EnvSpec) -> EnvSpec:
    """Add (or replace) an environment; every part of ficomm sees it from then on."""
    if spec.default_backend not in spec.backends:
        raise ConfigError(
            f"{spec.name}: default_backend {spec.default_backend!r} is not one of its backends "
            f"{sorted(spec.backends)}"
        )
    if spec.basins and (spec.avoid_return is None or spec.basin_tol is None):
        raise ConfigError(f"{spec.name}: basins=True needs avoid_return and basin_tol")
    _ENVS[spec.name] = spec
    ENV_NAMES[:] = sorted(_ENVS)
    return spec


# PredatorPrey's basins: -0.01 per agent per step over 100 steps; the "avoid" band is 0.25 per
# agent wide (1.0 for 4 agents), so that on every team size it admits the same numbers of
# captures (+5 per agent) and lone-predator penalties (-0.75 per agent) per episode.
_PP_STEP_COST, _PP_MAX_STEPS, _PP_CAPTURE, _PP_TOL_PER_AGENT = -0.01, 100, 5.0, 0.25
_PP_PENALTY = -0.75  # the paper's (ma-gym's default is -0.5)


def _predator_prey(
    name: str,
    title: str,
    grid: tuple[int, int],
    n_agents: int,
    n_preys: int,
    penalty: float = _PP_PENALTY,
    family: str = "predator_prey",
    **backend: Any,
) -> EnvSpec:
    """A PredatorPrey entry: the paper's rules, `n_agents` predators and `n_preys` prey, and
    `penalty` for a prey met by a lone predator."""
    env_args: dict[str, Any] = {}
    if (grid, n_agents, n_preys) != ((7, 7), 4, 2):  # the port's defaults are the paper's
        env_args = {"grid_shape": grid, "n_agents": n_agents, "n_preys": n_preys}
    if family != "predator_prey":  # the penalty family names its penalty, the paper's too
        env_args["penalty"] = penalty
    return EnvSpec(
        name=name,
        title=title,
        backends={
            "native": BackendSpec(
                title="native",
                single="ficomm.envs.predator_prey:PredatorPrey",
                vector="ficomm.envs.predator_prey:VectorPredatorPrey",
                # every prey captured at once by all agents, each agent paid the capture reward
                max_return=n_preys * n_agents * _PP_CAPTURE,
                **backend,
            )
        },
        default_backend="native",
        default_budget=1_000_000,
        metric="eval_return_mean",
        metric_label=f"team return (sum over {n_agents} agents)",
        basins=True,
        env_args=env_args,
        family=family,
        team_size=n_agents,
        avoid_return=n_agents * _PP_MAX_STEPS * _PP_STEP_COST,
        basin_tol=n_agents * _PP_TOL_PER_AGENT,
        sight=(2, -1),  # obs: (row, col), the view's prey cells, time
        penalty=penalty,
    )


# The paper's 7x7 grid with 4 predators and 2 prey, and larger teams at the same density of
# predators (about 0.08 per cell) and prey (half as many as predators). Speed scales as 1/n
# (cost per agent-step is about flat, bench/results/scale.md); memory adds the larger buffer.
register_env(
    _predator_prey(
        "predator_prey", "PredatorPrey 7x7", (7, 7), 4, 2, mem_mb=2000, steps_per_second=250
    )
)
register_env(
    _predator_prey(
        "predator_prey_8",
        "PredatorPrey 10x10, 8 predators",
        (10, 10),
        8,
        4,
        mem_mb=2500,
        steps_per_second=125,
    )
)
register_env(
    _predator_prey(
        "predator_prey_16",
        "PredatorPrey 14x14, 16 predators",
        (14, 14),
        16,
        8,
        mem_mb=3500,
        steps_per_second=60,
    )
)
# The penalty study (beyond the paper): the paper's PredatorPrey with the lone-predator penalty
# at the paper's -0.75, ma-gym's default -0.5, -0.25 and 0; one family, the penalty its axis.
PENALTY_FAMILY = "predator_prey_penalty"
for _penalty in (-0.75, -0.5, -0.25, 0.0):
    register_env(
        _predator_prey(
            f"predator_prey_p{round(-100 * _penalty):03d}",
            f"PredatorPrey 7x7, penalty {_penalty:g}",
            (7, 7),
            4,
            2,
            penalty=_penalty,
            family=PENALTY_FAMILY,
            mem_mb=2000,
            steps_per_second=250,
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
                run_mb=1800,  # float32 observations: 5000 episodes x 251 steps x 3 x 101
                steps_per_second=150,
                pack={"cpu": 5, "cuda": 20},
            ),
            "sc2": BackendSpec(
                title="StarCraft II",
                single="ficomm.envs.sc2:SC2Env",
                max_return=20.0,
                mem_mb=8000,
                run_mb=4000,  # a game of its own (SingleEnvs) and its replay buffer
                steps_per_second=60,
                pack={"cpu": 1, "cuda": 1},  # one game per run: nothing is shared
            ),
        },
        default_backend="sc2",
        default_budget=3_000_000,
        metric="eval_win_rate",
        metric_label="test win rate (fraction of episodes)",
        team_size=3,
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


def env_params(env: str, **params: Any) -> dict[str, Any]:
    """The constructor settings of a run: the entry's `env_args` with the run's over them."""
    return {**env_spec(env).env_args, **params}


def make_env(env: str, backend: str, seed: int | None = None, **params: Any) -> MultiAgentEnv:
    """Build one episode-at-a-time environment from its config name and backend; `params`
    (the run's env_args) override the entry's own `env_args`."""
    return _resolve(env, backend, vector=False)(seed=seed, **env_params(env, **params))


def make_vector_env(
    env: str, backend: str, num_envs: int, seed: int | None = None, **params: Any
) -> VectorEnv:
    """Build `num_envs` independent episodes stepped at once (settings as `make_env`)."""
    factory = _resolve(env, backend, vector=True)
    return factory(num_envs=num_envs, seed=seed, **env_params(env, **params))


def make_eval_env(
    env: str, backend: str, episodes: int, seed: int | None = None, **params: Any
) -> VectorEnv | MultiAgentEnv:
    """The evaluation environment: all `episodes` at once where the backend has a vectorised
    form, else one episode at a time (real StarCraft II)."""
    try:
        return make_vector_env(env, backend, episodes, seed=seed, **params)
    except ConfigError:
        return make_env(env, backend, seed=seed, **params)


def make_pack_env(env: str, backend: str, seeds: list[int], **params: Any) -> VectorEnv:
    """The training episodes of a pack of len(seeds) runs, stepped together: the backend's
    vectorised form, else one single env per run (`SingleEnvs`, built with the runs' seeds).
    Episode b is reset with the seed run b draws (`reset(seeds=...)`), so each run plays
    exactly the episodes it would play alone."""
    if backend_spec(env, backend).vector is not None:
        return make_vector_env(env, backend, len(seeds), seed=seeds[0], **params)
    envs: list[MultiAgentEnv] = []
    try:
        for seed in seeds:
            envs.append(make_env(env, backend, seed=seed, **params))
    except BaseException:
        for built in envs:
            built.close()
        raise
    return SingleEnvs(envs)


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
    "env_params",
    "env_spec",
    "make_env",
    "make_pack_env",
    "make_vector_env",
    "register_env",
]
