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
- a game crash: when the game connection fails mid-step, SMAC relaunches StarCraft II
  (``full_restart``, counted in ``force_restarts``) and returns ``(0, True, {})``, with no
  ``battle_won``. That episode was interrupted, neither won nor lost: the adapter reports it
  as truncated (not terminated) with ``info["interrupted"] = True``, counts it
  (``interruptions``, also in ``get_stats``) and warns.
- a relaunched game: after any change of ``force_restarts`` the adapter closes SMAC's env and
  builds a fresh one. SMAC adds the enemies' health and shields to its reward scale on every
  launch during its first episode, so a crash there would leave a second game with an
  inflated scale (3s_vs_5z: 1750 instead of 1000); a fresh env has the scale of one launch.
  The fresh env is seeded with the same seed, as SMAC's own relaunch is. For the same reason
  a reset that abandons the first episode of a SMAC env (SMAC would launch a second game)
  starts a fresh env.

Everything else (difficulty "7", step_mul 8, reward scaling, ...) stays at SMAC's defaults,
as in the paper; extra ``env_args`` are passed to ``StarCraft2Env``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ficomm.envs.base import ConfigError, EnvInfo, MultiAgentEnv, Step

MAP_NAME = "3s_vs_5z"
SMAC_COMMIT = "d6aab33f76abc3849c50463a8592a84f59a5ef84"  # oxwhirl/smac, as envs/sc2.yaml pins
SMAC_GIT = f"git+https://github.com/oxwhirl/smac.git@{SMAC_COMMIT}"
SMAC_MAPS_URL = "https://github.com/oxwhirl/smac/releases/download/v0.1-beta1/SMAC_Maps.zip"

_INSTALL_HELP = (
    f"Install SMAC with `pip install {SMAC_GIT}` (the PyPI package named `smac` is SMAC3, "
    "an unrelated hyperparameter optimiser), or create the real-SMAC software environment "
    "envs/sc2.yaml. SMAC also needs the StarCraft II Linux game, version 4.10 (SC2.4.10, "
    "from https://github.com/Blizzard/s2client-proto#downloads), unpacked at $SC2PATH "
    "(default ~/StarCraftII), and the SMAC maps "
    f"({SMAC_MAPS_URL}) extracted into $SC2PATH/Maps (giving $SC2PATH/Maps/SMAC_Maps). "
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


# The two builds SMAC's README names (results on them differ); pysc2's own table, where pysc2
# is importable, names every other build.
_KNOWN_BUILDS = {69232: "4.6.2", 75689: "4.10.0"}


def installed_builds() -> list[int]:
    """The game builds in $SC2PATH/Versions (folders ``Base<build>``), lowest first."""
    versions = sc2_path() / "Versions"
    if not versions.is_dir():
        return []
    names = (d.name[4:] for d in versions.iterdir() if d.name.startswith("Base"))
    return sorted(int(n) for n in names if n.isdigit())


def _build_names() -> dict[int, list[str]]:
    """Game version names by build number: pysc2's table, or the two builds SMAC names."""
    try:
        from pysc2.run_configs.lib import VERSIONS
    except Exception:  # noqa: BLE001 - pysc2 missing or broken: fall back, never fail a run
        return {b: [v] for b, v in _KNOWN_BUILDS.items()}
    names: dict[int, list[str]] = {}
    for v in VERSIONS.values():
        names.setdefault(int(v.build_version), []).append(v.game_version)
    return names


def _smac_package() -> dict[str, Any]:
    """oxwhirl/smac's installed version and, for a pip install from git, its commit."""
    out: dict[str, Any] = {"smac_version": None, "smac_commit": None, "smac_source": None}
    try:
        dist = importlib.metadata.distribution("smac")
    except importlib.metadata.PackageNotFoundError:
        return out
    if "StarCraft" not in (dist.metadata["Summary"] or ""):  # PyPI's `smac` is SMAC3
        return out
    # PEP 610: pip records where a package came from; a git install names its commit there
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    out["smac_source"] = direct.get("url")
    out["smac_commit"] = direct.get("vcs_info", {}).get("commit_id")
    out["smac_version"] = dist.version
    return out


class SC2Env(MultiAgentEnv):
    """3s_vs_5z in StarCraft II via SMAC's ``StarCraft2Env``.

    ``seed`` is SMAC's game seed, which StarCraft II takes once, when SMAC launches the game
    on the first reset. A seed given to the first ``reset`` replaces it; seeds given to later
    resets cannot reach the running game (re-seeding would mean relaunching it, seconds per
    episode) and are ignored, with one warning. ``env_factory`` replaces ``StarCraft2Env``
    (tests inject a stand-in); ``smac_kwargs`` go to it unchanged.

    ``interruptions`` counts episodes cut short by a game crash; ``rebuilds`` counts the fresh
    SMAC envs made after SMAC relaunched the game.
    """

    backend = "sc2"
    max_reset_attempts = 3  # resets in a row that may crash before the adapter gives up

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
        self._last: Step | None = None
        self._done = True
        self._launched = False
        self._warned_seed = False
        self._closed = False
        self.interruptions = 0
        self.rebuilds = 0
        self._stats_before = dict.fromkeys(_STAT_ATTRS, 0)  # of the SMAC envs replaced

    def _build(self, seed: int | None):
        try:
            env = self._factory(seed=seed, **self._kwargs)
        except TypeError as err:  # an env_args key StarCraft2Env does not take
            raise ConfigError(f"env_args: StarCraft2Env rejected the arguments: {err}") from err
        self._restarts_seen = _force_restarts(env)
        self._first_episode_open = False  # reset, and no episode ended yet, on this SMAC env
        return env

    def _rebuild_if_relaunched(self) -> bool:
        """Replace SMAC's env by a fresh one if SMAC relaunched the game; True if it did."""
        if _force_restarts(self._env) == self._restarts_seen:
            return False
        self._replace_env()
        return True

    def _replace_env(self) -> None:
        for key, attr in _STAT_ATTRS.items():
            self._stats_before[key] += int(getattr(self._env, attr, 0))
        self._env.close()
        self._env = self._build(self._seed)
        self.rebuilds += 1

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
        if self._first_episode_open:
            # SMAC launches a game on every reset until its first episode ends, adding to the
            # reward scale each time; a fresh env launches once
            self._replace_env()
        for _ in range(self.max_reset_attempts):
            self._env.reset()
            self._launched = True
            self._first_episode_open = True
            # SMAC relaunched the game inside reset: its observation may be of the dead game
            if not self._rebuild_if_relaunched():
                break
            warnings.warn(
                "SC2Env.reset: StarCraft II crashed while the episode started; SMAC "
                "relaunched it, the adapter built a fresh SMAC env and resets again",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            raise RuntimeError(
                f"SC2Env.reset: StarCraft II crashed on {self.max_reset_attempts} resets in a "
                "row; see SMAC's and the game's logs"
            )
        self._done = False
        return self._observe(0.0, False, False, {"won": False, "interrupted": False})

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
        self._done = bool(ended)
        if ended and "battle_won" not in raw_info:  # SMAC's answer to a crash: (0, True, {})
            return self._interrupted()
        if ended:
            self._first_episode_open = False
        truncated = bool(ended and raw_info.get("episode_limit", False))
        terminated = bool(ended) and not truncated
        info = {
            "won": bool(raw_info.get("battle_won", False)),
            "interrupted": False,
            "dead_allies": int(raw_info.get("dead_allies", 0)),
            "dead_enemies": int(raw_info.get("dead_enemies", 0)),
        }
        return self._observe(float(reward), terminated, truncated, info)

    def _interrupted(self) -> Step:
        """The step on which the game crashed: truncated, reward 0, the last observation
        repeated (the new game's units are not this episode's), and reported."""
        self.interruptions += 1
        warnings.warn(
            f"SC2Env.step: StarCraft II crashed mid-episode and SMAC relaunched it; the "
            f"episode is interrupted (reported truncated, info['interrupted'], neither won nor "
            f"lost); interruptions so far: {self.interruptions}",
            RuntimeWarning,
            stacklevel=3,
        )
        self._rebuild_if_relaunched()
        last = self._last
        info = {
            "won": False,
            "interrupted": True,
            "dead_allies": last.info.get("dead_allies", 0),
            "dead_enemies": last.info.get("dead_enemies", 0),
        }
        return Step(last.obs.copy(), last.state.copy(), last.avail.copy(), 0.0, False, True, info)

    def _observe(self, reward: float, terminated: bool, truncated: bool, info: dict) -> Step:
        obs = np.asarray(self._env.get_obs(), dtype=np.float32).reshape(
            self.info.n_agents, self.info.obs_size
        )
        state = np.asarray(self._env.get_state(), dtype=np.float32).reshape(self.info.state_size)
        self._avail = np.asarray(self._env.get_avail_actions()).astype(bool)
        self._last = Step(obs, state, self._avail.copy(), reward, terminated, truncated, info)
        return self._last._replace(obs=obs.copy(), state=state.copy())

    def get_stats(self) -> dict:
        """SMAC's battle statistics (battles won, games, time-outs, relaunches) summed over
        the SMAC envs this adapter has used, with its own ``interruptions`` and ``rebuilds``."""
        stats = {
            key: self._stats_before[key] + int(getattr(self._env, attr, 0))
            for key, attr in _STAT_ATTRS.items()
        }
        stats["battles_draw"] = stats["timeouts"]
        stats["win_rate"] = stats["battles_won"] / max(stats["battles_game"], 1)
        stats["interruptions"] = self.interruptions
        stats["rebuilds"] = self.rebuilds
        return stats

    def run_facts(self) -> dict[str, Any]:
        """What a run on this backend depends on and SMAC leaves unrecorded: the game build
        (SMAC warns that 4.6.2 and 4.10 give different results), SMAC's version and commit,
        pysc2's version, the map, and which env class the adapter drives."""
        launched = getattr(getattr(self._env, "_run_config", None), "version", None)
        builds = installed_builds()
        wanted = self._kwargs.get("game_version")
        names = _build_names()
        if launched is not None:  # the build pysc2 actually started
            build = int(launched.build_version)
        elif wanted:  # the build pysc2 will start for game_version=...
            build = next((b for b, vs in names.items() if wanted in vs), None)
        else:  # pysc2 starts the newest build in $SC2PATH/Versions
            build = builds[-1] if builds else None
        try:
            pysc2_version = importlib.metadata.version("pysc2")
        except importlib.metadata.PackageNotFoundError:
            pysc2_version = None
        return {
            "backend": self.backend,
            "map": self._kwargs["map_name"],
            "sc2_build": build,
            "sc2_version": "/".join(names.get(build, [])) or None,
            "sc2_builds_installed": builds,
            "sc2_game_version_arg": wanted,
            **_smac_package(),
            "smac_commit_pinned": SMAC_COMMIT,
            "pysc2_version": pysc2_version,
            "env_class": _qualified_name(self._factory),
        }

    def close(self) -> None:
        """Close SMAC's env, which shuts the game down; a second call does nothing."""
        if not self._closed:
            self._closed = True
            self._env.close()


# get_stats' keys and the StarCraft2Env attributes they count (read directly, because SMAC's
# get_stats divides by the number of games and fails before the first one ends)
_STAT_ATTRS = {
    "battles_won": "battles_won",
    "battles_game": "battles_game",
    "timeouts": "timeouts",
    "restarts": "force_restarts",
}


def _force_restarts(env: Any) -> int:
    """How often SMAC relaunched the game of `env` (``StarCraft2Env.force_restarts``)."""
    return int(getattr(env, "force_restarts", 0))


def _qualified_name(factory: Any) -> str:
    """module.Name of a class or function (of the wrapped one for a functools.partial)."""
    factory = getattr(factory, "func", factory)
    module = getattr(factory, "__module__", None) or "?"
    return f"{module}.{getattr(factory, '__qualname__', type(factory).__qualname__)}"
