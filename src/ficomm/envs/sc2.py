"""3s_vs_5z on real StarCraft II through oxwhirl/smac (backend ``sc2``).

An adapter from SMAC's ``StarCraft2Env`` to ficomm's protocol. SMAC and the game are needed
only when this backend is used, and are looked for then, with an error that says what to
install when they are missing. There is no fallback to another backend.

Protocol mapping (SMAC's API: ``reset``, ``get_obs``, ``get_state``, ``get_avail_actions``,
``step(actions) -> (reward, terminated, info)``, ``get_env_info``, ``get_stats``, ``close``):

- reward: SMAC's team reward (shaped, scaled to a maximum of 20 by default).
- won: ``info["battle_won"]``.
- truncated: ``info["episode_limit"]``. SMAC writes that key only with
  ``continuing_episode=True``, a flag that changes nothing else in SMAC (it only labels the
  time-out), so the adapter always sets it; terminated = SMAC's terminated and not truncated.
- actions are checked against ``get_avail_actions`` first: an unavailable action raises
  ValueError here, instead of SMAC's AssertionError inside the game loop.

Everything else (difficulty "7", step_mul 8, reward scaling, ...) stays at SMAC's defaults,
as in the paper; extra ``env_args`` are passed to ``StarCraft2Env``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ficomm.envs.base import ConfigError, EnvInfo, MultiAgentEnv, Step

MAP_NAME = "3s_vs_5z"
SMAC_GIT = "git+https://github.com/oxwhirl/smac.git"
SMAC_MAPS_URL = "https://github.com/oxwhirl/smac/releases/download/v0.1-beta1/SMAC_Maps.zip"

_INSTALL_HELP = (
    f"Install SMAC with `pip install {SMAC_GIT}` (the PyPI package named `smac` is SMAC3, "
    "an unrelated hyperparameter optimiser), or create the real-SMAC software environment "
    "envs/sc2.yaml. SMAC also needs the StarCraft II Linux game, version 4.10 (SC2.4.10, "
    "from https://github.com/Blizzard/s2client-proto#downloads), unpacked at $SC2PATH "
    "(default ~/StarCraftII), and the SMAC maps "
    f"({SMAC_MAPS_URL}) unzipped into $SC2PATH/Maps/SMAC_Maps. "
    "Or choose backend=smax (jaxmarl's SMAX, a JAX re-implementation that is not StarCraft II)."
)


def sc2_path() -> Path:
    """Where pysc2 looks for the game: $SC2PATH, default ~/StarCraftII."""
    return Path(os.environ.get("SC2PATH", "~/StarCraftII")).expanduser()


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package is missing
        return False
    except ValueError:  # imported, but without a module spec
        return sys.modules.get(name) is not None


def _smac_env_class() -> Callable[..., Any]:
    try:
        from smac.env import StarCraft2Env
    except ImportError as err:
        if _module_exists("smac.env"):  # oxwhirl/smac is there but one of its imports failed
            found = f"SMAC is installed but does not import ({err}). "
        elif _module_exists("smac"):
            found = "the installed `smac` is not oxwhirl/smac (it has no smac.env). "
        else:
            found = "oxwhirl/smac is not installed. "
        raise ConfigError(
            f"backend: 'sc2' needs StarCraft II and SMAC: {found}{_INSTALL_HELP}"
        ) from err
    except TypeError as err:  # protobuf >= 4 with pysc2's protobuf-3 generated code
        raise ConfigError(
            f"backend: 'sc2': SMAC's StarCraft II protocol modules do not load ({err}). They "
            "need protobuf<3.21 (envs/sc2.yaml pins 3.20.3 and a wandb that accepts it; see "
            "envs/README.md), or PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python with a newer "
            "protobuf."
        ) from err
    return StarCraft2Env


def _check_game(map_name: str) -> None:
    """Fail early, with directions, when the game or the SMAC map is not where pysc2 looks."""
    root = sc2_path()
    where = f"SC2PATH={os.environ.get('SC2PATH', '(unset, so ~/StarCraftII)')} -> {root}"
    if not (root / "Versions").is_dir():
        raise ConfigError(
            f"backend: 'sc2' cannot find the StarCraft II game ({where} has no Versions/ "
            f"folder). {_INSTALL_HELP}"
        )
    map_file = root / "Maps" / "SMAC_Maps" / f"{map_name}.SC2Map"
    if not map_file.is_file():
        raise ConfigError(
            f"backend: 'sc2' found the game but not the SMAC map {map_file} ({where}). "
            f"{_INSTALL_HELP}"
        )


def _resolve_factory(env_factory: Callable[..., Any] | str | None) -> Callable[..., Any]:
    """The SMAC class, or an injected factory: a callable or a "module:attribute" string
    (strings keep a run's config plain YAML; tests use them to inject a stand-in)."""
    if env_factory is None:
        factory = _smac_env_class()
        _check_game(MAP_NAME)
        return factory
    if callable(env_factory):
        return env_factory
    if isinstance(env_factory, str) and ":" in env_factory:
        module, attr = env_factory.split(":", 1)
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(
                f"env_args.env_factory: cannot import {env_factory!r}: {err}"
            ) from err
    raise ConfigError(
        f"env_args.env_factory: expected a callable or 'module:attribute', got {env_factory!r}"
    )


class SC2Env(MultiAgentEnv):
    """3s_vs_5z in StarCraft II via SMAC's ``StarCraft2Env``.

    ``seed`` is SMAC's game seed, which StarCraft II takes once, when SMAC launches the game
    on the first reset. A seed given to the first ``reset`` replaces it; seeds given to later
    resets cannot reach the running game (re-seeding would mean relaunching it, seconds per
    episode) and are ignored, with one warning. ``env_factory`` replaces ``StarCraft2Env``
    (tests inject a stand-in); ``smac_kwargs`` go to it unchanged.
    """

    backend = "sc2"

    def __init__(
        self,
        seed: int | None = None,
        env_factory: Callable[..., Any] | str | None = None,
        **smac_kwargs: Any,
    ):
        if "map_name" in smac_kwargs and smac_kwargs["map_name"] != MAP_NAME:
            raise ConfigError(
                f"env_args.map_name: this backend is registered for {MAP_NAME!r}, "
                f"got {smac_kwargs['map_name']!r}"
            )
        if not smac_kwargs.get("continuing_episode", True):
            raise ConfigError(
                "env_args.continuing_episode: must stay true; without it SMAC does not label "
                "time-outs and the adapter could not tell truncation from termination"
            )
        self._factory = _resolve_factory(env_factory)
        self._kwargs = {"map_name": MAP_NAME, "continuing_episode": True, **smac_kwargs}
        self._seed = seed
        self._env = self._build(seed)
        raw = self._env.get_env_info()
        self.info = EnvInfo(
            n_agents=int(raw["n_agents"]),
            n_actions=int(raw["n_actions"]),
            obs_size=int(raw["obs_shape"]),
            state_size=int(raw["state_shape"]),
            episode_limit=int(raw["episode_limit"]),
            has_win=True,
        )
        self._avail: np.ndarray | None = None
        self._done = True
        self._launched = False
        self._warned_seed = False

    def _build(self, seed: int | None):
        try:
            return self._factory(seed=seed, **self._kwargs)
        except TypeError as err:  # an env_args key StarCraft2Env does not take
            raise ConfigError(f"env_args: StarCraft2Env rejected the arguments: {err}") from err

    def reset(self, seed: int | None = None) -> Step:
        if seed is not None and seed != self._seed:
            if not self._launched:
                self._env.close()
                self._seed = seed
                self._env = self._build(seed)
            elif not self._warned_seed:
                self._warned_seed = True
                warnings.warn(
                    "SC2Env.reset(seed=...): StarCraft II was seeded when it launched; "
                    "later seeds are ignored (the game's random stream continues)",
                    stacklevel=2,
                )
        self._env.reset()
        self._launched = True
        self._done = False
        return self._observe(0.0, False, False, {"won": False})

    def step(self, actions: np.ndarray) -> Step:
        if self._avail is None or self._done:
            raise RuntimeError("step() on a finished or unstarted episode; call reset() first")
        acts = np.asarray(actions)
        if acts.shape != (self.info.n_agents,) or not np.issubdtype(acts.dtype, np.integer):
            raise ValueError(
                f"actions: expected {self.info.n_agents} integers, got {acts.dtype} {acts.shape}"
            )
        for agent, a in enumerate(acts.tolist()):
            if not (0 <= a < self.info.n_actions and self._avail[agent, a]):
                raise ValueError(
                    f"action {a} of agent {agent} is not available; available actions: "
                    f"{np.flatnonzero(self._avail[agent]).tolist()}"
                )
        reward, ended, raw_info = self._env.step(acts.tolist())
        truncated = bool(ended and raw_info.get("episode_limit", False))
        terminated = bool(ended) and not truncated
        self._done = bool(ended)
        info = {
            "won": bool(raw_info.get("battle_won", False)),
            "dead_allies": int(raw_info.get("dead_allies", 0)),
            "dead_enemies": int(raw_info.get("dead_enemies", 0)),
        }
        return self._observe(float(reward), terminated, truncated, info)

    def _observe(self, reward: float, terminated: bool, truncated: bool, info: dict) -> Step:
        obs = np.asarray(self._env.get_obs(), dtype=np.float32).reshape(
            self.info.n_agents, self.info.obs_size
        )
        state = np.asarray(self._env.get_state(), dtype=np.float32).reshape(self.info.state_size)
        self._avail = np.asarray(self._env.get_avail_actions()).astype(bool)
        return Step(obs, state, self._avail.copy(), reward, terminated, truncated, info)

    def get_stats(self) -> dict:
        """SMAC's running battle statistics (battles won, games, time-outs, ...)."""
        return self._env.get_stats()

    def close(self) -> None:
        self._env.close()
