"""3s_vs_5z on jaxmarl's SMAX, the JAX re-implementation of SMAC (backend ``smax``).

SMAX is *not* StarCraft II: 3 Stalkers against 5 scripted Zealots (``HeuristicEnemySMAX``) on
an open 32x32 map, with its own observation (101 per agent), state (96), 10 actions (4 moves,
stop, 5 attacks), no shields and a reward that sums to at most about 2 (SMAC: about 20). The
README's SMAX section lists the differences.

How the protocol is derived from jaxmarl 0.2.0's code (``smax_env.py``):

- won: every enemy dead and at least one ally alive (the condition SMAX pays its win bonus on);
  all units dead on both sides in one step is a draw, as in SMAX.
- terminated: one side has no unit left. truncated: ``state.step`` (incremented by each
  ``step_env``) reached the episode limit with units left on both sides. jaxmarl's own
  ``done`` tests the step counter *before* incrementing it, so it would allow limit + 1 steps;
  we end the episode after exactly ``episode_limit`` steps, as SMAC does.
- ``step_env`` is used, never the auto-resetting ``step``; masks come from
  ``get_avail_actions`` (a dead ally may only "stop"), and SMAX does not enforce them, so we do:
  an unavailable action raises ValueError before anything reaches jaxmarl.

JAX runs on the CPU unless ``device="gpu"``: ``JAX_PLATFORMS=cpu`` is set before JAX is first
imported, unless the user set JAX_PLATFORMS. The jitted kernels are built once per
(map, episode limit) and shared by every environment in the process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
import sys
import types
from typing import Any, NamedTuple

import numpy as np

from ficomm.envs.base import ConfigError, EnvInfo, MultiAgentEnv, Step, VectorEnv

MAP_NAME = "3s_vs_5z"
EPISODE_LIMIT = 250  # SMAC's limit for 3s_vs_5z (jaxmarl's default would be 100)
DEVICES = ("cpu", "gpu")


@contextlib.contextmanager
def _silence_stdout():
    """Swallow what ``import jaxmarl`` prints.

    jaxmarl prints two lines on import, and one of its modules resets ``sys.stdout`` and
    ``sys.stderr`` to the interpreter's originals, so redirecting ``sys.stdout`` is not enough:
    file descriptor 1 is pointed at /dev/null and the Python-level streams are restored after.
    """
    saved_streams = sys.stdout, sys.stderr
    for stream in (sys.stdout, sys.__stdout__):
        if stream is not None:
            stream.flush()
    try:
        saved_fd = os.dup(1)
    except OSError:  # no file descriptor 1 (embedded interpreters): Python-level only
        saved_fd = None
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        if saved_fd is not None:
            os.dup2(devnull, 1)
        sys.stdout = io.StringIO()
        yield
    finally:
        if sys.__stdout__ is not None:
            sys.__stdout__.flush()  # flush into /dev/null before fd 1 comes back
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)
        os.close(devnull)
        sys.stdout, sys.stderr = saved_streams


def _import_jax(device: str):
    """Import jax (CPU-only unless asked) and jaxmarl quietly; return (jax, jaxmarl)."""
    if device not in DEVICES:
        raise ConfigError(f"env_args.device: {device!r} is not one of {list(DEVICES)}")
    if "jax" not in sys.modules and device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    try:
        import jax

        with _silence_stdout():
            smax = _import_smax_only()
    except ImportError as err:
        raise ConfigError(
            "backend: 'smax' needs jaxmarl 0.2.0 and jax, which are not installed: "
            "pip install 'ficomm[smax]' (or: pip install jaxmarl==0.2.0)"
        ) from err
    return jax, smax


def _import_smax_only():
    """Import ``jaxmarl.environments.smax`` without jaxmarl's package ``__init__``.

    That ``__init__`` imports every jaxmarl environment (STORM alone spends ~3 s building JAX
    constants), about 6 s per training process, of which SMAX needs nothing. The two parent
    packages are registered as bare packages for the import and removed after it, so a later
    ``import jaxmarl`` still runs the real one (and reuses the SMAX modules loaded here).
    """
    if "jaxmarl.environments.smax" in sys.modules:
        return sys.modules["jaxmarl.environments.smax"]
    if "jaxmarl" in sys.modules:  # the user imported jaxmarl already: nothing to save
        import jaxmarl.environments.smax as smax

        return smax
    spec = importlib.util.find_spec("jaxmarl")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("jaxmarl is not installed")
    root = list(spec.submodule_search_locations)[0]
    parents = {"jaxmarl": root, "jaxmarl.environments": os.path.join(root, "environments")}
    for name, path in parents.items():
        module = types.ModuleType(name)
        module.__path__ = [path]
        sys.modules[name] = module
    try:
        import jaxmarl.environments.smax as smax
    finally:
        for name in parents:
            sys.modules.pop(name, None)
    return smax


def _jax_device(device: str):
    jax, _ = _import_jax(device)
    try:
        return jax.devices(device)[0]
    except RuntimeError as err:
        raise ConfigError(
            f"env_args.device: {device!r} was asked for but JAX has no such device "
            f"(JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS', '')!r}, JAX backend "
            f"{jax.default_backend()!r}). For a GPU install a CUDA jax (envs/cuda.yaml) and do "
            "not set JAX_PLATFORMS=cpu, or use env_args.device=cpu."
        ) from err


class _Kernels(NamedTuple):
    """Jitted functions for one (map, episode limit), single-episode and batched.

    Each returns (key, state, packed): ``packed`` is one float32 vector per episode holding
    everything the host needs, so that a step costs one device-to-host transfer; ``unpack``
    splits it into named NumPy arrays (any leading batch axes are kept).
    """

    info: EnvInfo
    reset: Any
    step: Any
    reset_batch: Any
    step_batch: Any
    unpack: Any


@functools.cache
def _kernels(map_name: str, episode_limit: int) -> _Kernels:
    import jax  # already imported by _import_jax, with the platform chosen there
    import jax.numpy as jnp

    smax = sys.modules["jaxmarl.environments.smax"]
    # what jaxmarl.make("HeuristicEnemySMAX", **kwargs) builds
    env = smax.HeuristicEnemySMAX(
        scenario=smax.map_name_to_scenario(map_name),
        max_steps=episode_limit,
    )
    agents = list(env.agents)
    n = len(agents)
    info = EnvInfo(
        n_agents=n,
        n_actions=int(env.action_spaces[agents[0]].n),
        obs_size=int(env.obs_size),
        state_size=int(env.state_size),
        episode_limit=episode_limit,
        has_win=True,
    )
    shapes = {
        "obs": (n, info.obs_size),
        "state": (info.state_size,),
        "avail": (n, info.n_actions),
        "reward": (),
        "terminated": (),
        "truncated": (),
        "won": (),
        "dead_allies": (),
        "dead_enemies": (),
    }
    sizes = {k: int(np.prod(v)) for k, v in shapes.items()}
    offsets = dict(zip(shapes, np.cumsum([0, *sizes.values()])[:-1].tolist(), strict=True))
    dtypes = {"avail": bool, "terminated": bool, "truncated": bool, "won": bool}
    dtypes |= {"dead_allies": np.int64, "dead_enemies": np.int64}
    done_at = [offsets["terminated"], offsets["truncated"]]

    def pack(state, reward):
        obs = env.get_obs(state)
        avail = env.get_avail_actions(state)
        alive = state.state.unit_alive
        allies_dead = ~jnp.any(alive[:n])
        enemies_dead = ~jnp.any(alive[n:])
        terminated = allies_dead | enemies_dead
        fields = {
            "obs": jnp.stack([obs[a] for a in agents]),
            "state": env.get_world_state(state),
            "avail": jnp.stack([avail[a] for a in agents]),
            "reward": reward,
            "terminated": terminated,
            "truncated": (state.state.step >= episode_limit) & ~terminated,
            "won": enemies_dead & ~allies_dead,
            "dead_allies": jnp.sum(~alive[:n]),
            "dead_enemies": jnp.sum(~alive[n:]),
        }
        return jnp.concatenate([jnp.ravel(fields[k]).astype(jnp.float32) for k in shapes])

    def unpack(packed: np.ndarray) -> dict:
        lead = packed.shape[:-1]
        return {
            k: packed[..., offsets[k] : offsets[k] + sizes[k]]
            .reshape(lead + shapes[k])
            .astype(dtypes.get(k, np.float32))
            for k in shapes
        }

    def strong(tree):
        # The heuristic enemy's reset state holds a weakly typed int; the state step_env
        # returns does not. Without this, step_env would compile twice.
        return jax.tree.map(lambda x: jax.lax.convert_element_type(x, x.dtype), tree)

    def reset(key):
        key, sub = jax.random.split(key)
        _, state = env.reset(sub)
        state = strong(state)
        return key, state, pack(state, jnp.zeros((), jnp.float32))

    def step(key, state, actions):
        key, sub = jax.random.split(key)
        joint = {a: actions[i] for i, a in enumerate(agents)}
        _, state, rewards, _, _ = env.step_env(sub, state, joint)
        state = strong(state)
        return key, state, pack(state, rewards[agents[0]])  # one team reward for all allies

    def step_frozen(key, state, prev, actions):
        """One episode's step inside the batch: a finished episode keeps its state, flags and
        observation (``prev``, its previous packed output) and gets reward 0."""
        done = jnp.any(prev[jnp.array(done_at)] > 0)
        new_key, new_state, packed = step(key, state, actions)
        state = jax.tree.map(lambda new, old: jnp.where(done, old, new), new_state, state)
        packed = jnp.where(done, prev.at[offsets["reward"]].set(0.0), packed)
        return new_key, state, packed

    return _Kernels(
        info=info,
        reset=jax.jit(reset),
        step=jax.jit(step),
        reset_batch=jax.jit(jax.vmap(reset)),
        step_batch=jax.jit(jax.vmap(step_frozen)),
        unpack=unpack,
    )


def _key_data(seed: int | None, count: int | None = None) -> np.ndarray:
    """Raw threefry key(s) (uint32[2]) from any non-negative seed, or fresh entropy for None."""
    if seed is not None and (not isinstance(seed, int | np.integer) or seed < 0):
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    words = np.random.SeedSequence(seed).generate_state(2 * (count or 1), np.uint32)
    return words.reshape(-1, 2) if count is not None else words


def _check_params(episode_limit: Any, device: Any, unknown: dict) -> None:
    if unknown:
        raise ConfigError(
            f"env_args: unknown key(s) {sorted(unknown)} for backend 'smax'; "
            "valid keys are episode_limit and device"
        )
    if not isinstance(episode_limit, int | np.integer) or episode_limit < 1:
        raise ConfigError(
            f"env_args.episode_limit: expected a positive integer, got {episode_limit!r}"
        )
    if device not in DEVICES:
        raise ConfigError(f"env_args.device: {device!r} is not one of {list(DEVICES)}")


def _check_actions(
    actions: np.ndarray, avail: np.ndarray, live: np.ndarray | None = None
) -> np.ndarray:
    """Validate a joint action (..., n_agents) against the current masks; return it as int32."""
    acts = np.asarray(actions)
    if acts.shape != avail.shape[:-1]:
        raise ValueError(f"actions: expected shape {avail.shape[:-1]}, got {acts.shape}")
    if not np.issubdtype(acts.dtype, np.integer):
        raise ValueError(f"actions: expected integers, got dtype {acts.dtype}")
    n_actions = avail.shape[-1]
    in_range = (acts >= 0) & (acts < n_actions)
    ok = (
        in_range & np.take_along_axis(avail, np.clip(acts, 0, n_actions - 1)[..., None], -1)[..., 0]
    )
    if live is not None:
        ok |= ~live[:, None]
    if not ok.all():
        where = tuple(int(i) for i in np.argwhere(~ok)[0])
        who = f"agent {where[-1]}" + (f" in episode {where[0]}" if len(where) == 2 else "")
        raise ValueError(
            f"action {int(acts[where])} of {who} is not available; available actions: "
            f"{np.flatnonzero(avail[where]).tolist()}"
        )
    return acts.astype(np.int32)


class _SmaxBase:
    backend = "smax"

    def __init__(self, episode_limit: int, device: str, unknown: dict):
        _check_params(episode_limit, device, unknown)
        self.device = device
        self._device = _jax_device(device)
        self._k = _kernels(MAP_NAME, int(episode_limit))
        self.info = self._k.info
        self._jax = sys.modules["jax"]

    def _put(self, x):
        return self._jax.device_put(x, self._device)

    def _host(self, packed) -> dict:
        return self._k.unpack(np.asarray(packed))


class SmaxEnv(_SmaxBase, MultiAgentEnv):
    """One 3s_vs_5z episode at a time on jaxmarl's SMAX (not StarCraft II).

    ``episode_limit`` defaults to SMAC's 250; ``device`` is "cpu" (default) or "gpu".
    """

    def __init__(
        self,
        seed: int | None = None,
        episode_limit: int = EPISODE_LIMIT,
        device: str = "cpu",
        **unknown: Any,
    ):
        super().__init__(episode_limit, device, unknown)
        self._key = self._put(_key_data(seed))
        self._state = None
        self._avail: np.ndarray | None = None
        self._done = True

    def reset(self, seed: int | None = None) -> Step:
        if seed is not None:
            self._key = self._put(_key_data(seed))
        self._key, self._state, out = self._k.reset(self._key)
        return self._to_step(self._host(out))

    def step(self, actions: np.ndarray) -> Step:
        if self._state is None or self._done:
            raise RuntimeError("step() on a finished or unstarted episode; call reset() first")
        acts = _check_actions(actions, self._avail)
        self._key, self._state, out = self._k.step(self._key, self._state, acts)
        return self._to_step(self._host(out))

    def _to_step(self, out: dict) -> Step:
        self._avail = out["avail"]
        terminated, truncated = bool(out["terminated"]), bool(out["truncated"])
        self._done = terminated or truncated
        info = {
            "won": bool(out["won"]),
            "dead_allies": int(out["dead_allies"]),
            "dead_enemies": int(out["dead_enemies"]),
        }
        return Step(
            out["obs"],
            out["state"],
            out["avail"].copy(),  # the env validates the next actions against its own copy
            float(out["reward"]),
            terminated,
            truncated,
            info,
        )


class VectorSmaxEnv(_SmaxBase, VectorEnv):
    """``num_envs`` independent 3s_vs_5z SMAX episodes stepped at once (vmapped, one jit call).

    Finished episodes stay frozen until the next ``reset``: their actions are ignored (and not
    validated), their reward is 0 and their flags are kept.
    """

    def __init__(
        self,
        num_envs: int,
        seed: int | None = None,
        episode_limit: int = EPISODE_LIMIT,
        device: str = "cpu",
        **unknown: Any,
    ):
        if not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ConfigError(f"num_envs: expected a positive integer, got {num_envs!r}")
        super().__init__(episode_limit, device, unknown)
        self.num_envs = int(num_envs)
        self._keys = self._put(_key_data(seed, self.num_envs))
        self._state = None
        self._out = None  # the last output, kept on the device for the frozen-episode rule
        self._avail: np.ndarray | None = None
        self._done_mask = np.ones(self.num_envs, bool)
        # Frozen episodes get "stop", which SMAX allows for every unit, dead or alive.
        self._idle_action = 4

    @property
    def done(self) -> np.ndarray:
        return self._done_mask.copy()

    def reset(self, seed: int | None = None, seeds: Any = None) -> Step:
        """Start the episodes; ``seeds`` (one per episode) keys episode b exactly as
        ``SmaxEnv.reset(seed=seeds[b])``."""
        if seeds is not None:
            seeds = list(seeds)
            if len(seeds) != self.num_envs:
                raise ConfigError(
                    f"seeds: expected {self.num_envs} (one per episode), got {len(seeds)}"
                )
            self._keys = self._put(np.stack([_key_data(s) for s in seeds]))
        elif seed is not None:
            self._keys = self._put(_key_data(seed, self.num_envs))
        self._keys, self._state, self._out = self._k.reset_batch(self._keys)
        return self._to_step(self._host(self._out))

    def step(self, actions: np.ndarray) -> Step:
        if self._state is None:
            raise RuntimeError("step() before reset()")
        live = ~self._done_mask
        acts = _check_actions(actions, self._avail, live)
        acts = np.where(live[:, None], acts, self._idle_action).astype(np.int32)
        self._keys, self._state, self._out = self._k.step_batch(
            self._keys, self._state, self._out, acts
        )
        return self._to_step(self._host(self._out))

    def _to_step(self, out: dict) -> Step:
        self._avail = out["avail"]
        self._done_mask = out["terminated"] | out["truncated"]
        info = {k: out[k] for k in ("won", "dead_allies", "dead_enemies")}
        return Step(
            out["obs"],
            out["state"],
            out["avail"].copy(),
            out["reward"].astype(np.float32),
            out["terminated"].copy(),
            out["truncated"].copy(),
            info,
        )
