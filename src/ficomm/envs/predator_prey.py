"""PredatorPrey: an exact port of ma-gym 0.0.14's `PredatorPrey`, one episode at a time
(`PredatorPrey`) or many at once (`VectorPredatorPrey`).

Rules, observations, rewards and the use of the random stream follow ma-gym line by line, so
that with the same seed and actions both give the same episodes (tested against ma-gym):

* reset: predators, then prey, each drawn with ``randint(0, rows - 1)``, ``randint(0, cols - 1)``
  until the cell is empty (prey: and has no predator in its 4-neighbourhood); the exclusive
  upper bound means the last row and column are never used at reset, as in ma-gym.
* step: predators move in index order into empty on-grid cells; then each living prey, in
  order, counts the predators around it (one: ``penalty``; two or more: ``prey_capture_reward``
  and it is removed), and a surviving prey draws up to 5 moves from ``prey_move_probs``,
  taking the first whose target cell has no adjacent predator (an off-grid or occupied target
  is accepted and then ignored, so the prey stays).
* every agent gets the same reward; the team reward is their sum (``info["agent_rewards"]``
  holds the per-agent values).

Global state (ma-gym defines none): each predator's normalised (row, col), each prey's
normalised (row, col, alive) with zeros once captured, and ``step / max_steps``; size
``2 n_agents + 3 n_preys + 1`` (15 for the paper's setting).

ma-gym returns one ``done`` for both endings; here ``terminated`` means every prey was
captured and ``truncated`` means the step limit was hit with prey left.
"""

from __future__ import annotations

import functools
import hashlib
import math
import numbers
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ficomm.envs.base import ConfigError, EnvInfo, MultiAgentEnv, Step, VectorEnv

N_ACTIONS = 5  # 0 DOWN, 1 LEFT, 2 UP, 3 RIGHT, 4 NOOP (ma-gym's order)
NOOP = 4
_ROW_STEP = (1, 0, -1, 0, 0)
_COL_STEP = (0, -1, 0, 1, 0)
_PAD = 2  # a prey's candidate target may be off-grid by 1, and its neighbours by 2

PAPER_DEFAULTS: dict[str, Any] = {
    "grid_shape": (7, 7),
    "n_agents": 4,
    "n_preys": 2,
    "penalty": -0.75,
    "step_cost": -0.01,
    "prey_capture_reward": 5.0,
    "max_steps": 100,
    "agent_view_mask": (5, 5),
    "prey_move_probs": (0.175, 0.175, 0.175, 0.175, 0.3),
}


# --------------------------------------------------------------------------- seeding


def gym_seed_key(seed: int | None) -> list[int]:
    """The uint32 key that gym 0.20's ``seeding.np_random(seed)`` passes to
    ``RandomState.seed``: sha512 of the seed's decimal text, first 8 bytes, trailing zero
    words dropped. ``None`` draws 8 bytes of OS entropy first, as gym does."""
    if seed is None:
        a = _int_from_le_words(os.urandom(8))
    else:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ConfigError(f"seed: must be a non-negative integer or None, got {seed!r}")
        a = int(seed) % 2**64
    big = _int_from_le_words(hashlib.sha512(str(a).encode("utf8")).digest()[:8])
    if big == 0:
        return [0]
    key = []
    while big > 0:
        big, word = divmod(big, 2**32)
        key.append(word)
    return key


def _int_from_le_words(data: bytes) -> int:
    # gym unpacks native-order uint32 words; "2I" keeps that byte order.
    lo, hi = struct.unpack("2I", data)
    return lo + (hi << 32)


def gym_random_state(seed: int | None) -> np.random.RandomState:
    """A RandomState seeded exactly as gym 0.20's ``seeding.np_random(seed)`` seeds it."""
    return np.random.RandomState(gym_seed_key(seed))  # legacy init_by_array, as seed() does


def _episode_seeds(seeds: Any, num_envs: int) -> list[int]:
    """One seed per episode of a vector env, checked like a single env's seed."""
    seeds = list(seeds)
    if len(seeds) != num_envs:
        raise ConfigError(f"seeds: expected {num_envs} (one per episode), got {len(seeds)}")
    for s in seeds:
        gym_seed_key(s)  # raises ConfigError naming a bad seed
    return [int(s) for s in seeds]


def sub_seeds(seed: int | None, num_envs: int) -> list[int]:
    """Per-episode seeds of `VectorPredatorPrey`: episode ``b`` of ``VectorPredatorPrey(B,
    seed=s)`` replays ``PredatorPrey(seed=sub_seeds(s, B)[b])`` (prefix-stable in B)."""
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0
    ):
        raise ConfigError(f"seed: must be a non-negative integer or None, got {seed!r}")
    ss = np.random.SeedSequence(None if seed is None else int(seed))
    return [int(x) for x in ss.generate_state(num_envs, np.uint64)]


# --------------------------------------------------------------------------- configuration


def _int_field(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name}: must be an integer >= {low}, got {value!r}")
    return int(value)


def _float_field(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{name}: must be a finite number, got {value!r}")
    return float(value)


def _pair_field(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2:
        raise ConfigError(f"{name}: must be two integers (rows, cols), got {value!r}")
    return (_int_field(f"{name}[0]", pair[0], 1), _int_field(f"{name}[1]", pair[1], 1))


@dataclass(frozen=True)
class Geometry:
    """Validated settings plus lookup tables shared by the single and vector forms.

    Cells are indexed in a padded grid (2 rows and at least 2 columns of wall around the
    board, enough for a prey's off-grid candidate cell and its neighbours) that is wider than
    twice the board, so that the flat difference of two cells identifies their (row, col)
    offset uniquely and one table lookup answers "where in the agent's view?".
    """

    rows: int
    cols: int
    n_agents: int
    n_preys: int
    penalty: float
    step_cost: float
    prey_capture_reward: float
    max_steps: int
    view: tuple[int, int]
    prey_move_probs: tuple[float, ...]
    width: int = field(init=False)  # padded row length
    n_cells: int = field(init=False)  # padded grid size

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", max(self.cols + 2 * _PAD, 2 * self.cols + 1))
        object.__setattr__(self, "n_cells", (self.rows + 2 * _PAD) * self.width)

    # flat offsets of the five actions / prey moves
    @property
    def deltas(self) -> np.ndarray:
        return np.array(
            [r * self.width + c for r, c in zip(_ROW_STEP, _COL_STEP, strict=True)], np.int64
        )

    def cell(self, row: int, col: int) -> int:
        return (row + _PAD) * self.width + col + _PAD

    @property
    def obs_size(self) -> int:
        return 2 + self.view[0] * self.view[1] + 1

    @property
    def state_size(self) -> int:
        return 2 * self.n_agents + 3 * self.n_preys + 1

    @property
    def on_board(self) -> np.ndarray:
        """(n_cells,) bool: which padded cells are on the board."""
        grid = np.zeros((self.rows + 2 * _PAD, self.width), bool)
        grid[_PAD : _PAD + self.rows, _PAD : _PAD + self.cols] = True
        return grid.ravel()

    @property
    def reset_cells(self) -> np.ndarray:
        """Padded cells ma-gym can draw at reset: rows 0..rows-2, cols 0..cols-2."""
        return np.array(
            [self.cell(r, c) for r in range(self.rows - 1) for c in range(self.cols - 1)],
            np.int64,
        )

    @property
    def max_offset(self) -> int:
        """A bound on |difference| between two board cells (flat indices)."""
        return self.rows * self.width + self.cols

    @property
    def view_table(self) -> np.ndarray:
        """int64 table over offsets d + max_offset (prey cell minus agent cell): the index
        of that offset in the agent's row-major view, or -1 outside the view."""
        t = np.full(2 * self.max_offset + 1, -1, np.int64)
        rr, rc = (self.view[0] - 1) // 2, (self.view[1] - 1) // 2
        for dr in range(-rr, rr + 1):
            for dc in range(-rc, rc + 1):
                t[dr * self.width + dc + self.max_offset] = (dr + rr) * self.view[1] + dc + rc
        return t

    @property
    def position_features(self) -> np.ndarray:
        """(n_cells, 2) float32: (row / (rows-1), col / (cols-1)) of each board cell."""
        out = np.zeros((self.n_cells, 2), np.float32)
        for r in range(self.rows):
            for c in range(self.cols):
                out[self.cell(r, c)] = (r / (self.rows - 1), c / (self.cols - 1))
        return out

    @property
    def move_cdf(self) -> np.ndarray:
        """The prey-move CDF exactly as ``RandomState.choice(p=...)`` builds it."""
        cdf = np.asarray(self.prey_move_probs, np.float64).cumsum()
        cdf /= cdf[-1]
        return cdf


def make_geometry(**params: Any) -> Geometry:
    """Validate PredatorPrey's settings (the paper's by default, `PAPER_DEFAULTS`); raise
    ConfigError naming the offending field."""
    unknown = sorted(set(params) - set(PAPER_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: not a PredatorPrey setting; known settings: {sorted(PAPER_DEFAULTS)}"
        )
    return _make_geometry(**params)


def _make_geometry(
    grid_shape: Any = PAPER_DEFAULTS["grid_shape"],
    n_agents: Any = PAPER_DEFAULTS["n_agents"],
    n_preys: Any = PAPER_DEFAULTS["n_preys"],
    penalty: Any = PAPER_DEFAULTS["penalty"],
    step_cost: Any = PAPER_DEFAULTS["step_cost"],
    prey_capture_reward: Any = PAPER_DEFAULTS["prey_capture_reward"],
    max_steps: Any = PAPER_DEFAULTS["max_steps"],
    agent_view_mask: Any = PAPER_DEFAULTS["agent_view_mask"],
    prey_move_probs: Any = PAPER_DEFAULTS["prey_move_probs"],
) -> Geometry:
    rows, cols = _pair_field("grid_shape", grid_shape)
    if rows < 2 or cols < 2:
        # ma-gym draws randint(0, rows - 1), which is empty for a single row or column.
        raise ConfigError(f"grid_shape: needs at least 2 rows and 2 columns, got {grid_shape!r}")
    n_agents = _int_field("n_agents", n_agents, 1)
    n_preys = _int_field("n_preys", n_preys, 1)
    placeable = (rows - 1) * (cols - 1)
    if n_agents + n_preys > placeable:
        raise ConfigError(
            f"n_agents + n_preys: {n_agents} + {n_preys} entities cannot be placed on a "
            f"{rows}x{cols} grid: ma-gym places them only in rows 0..{rows - 2} and columns "
            f"0..{cols - 2} (randint's upper bound is exclusive), {placeable} cells; use fewer "
            "agents/prey or a larger grid_shape"
        )
    view = _pair_field("agent_view_mask", agent_view_mask)
    if view[0] % 2 == 0 or view[1] % 2 == 0:
        raise ConfigError(
            f"agent_view_mask: both sizes must be odd so the agent sits at the centre, got {view}"
        )
    if view[0] > rows or view[1] > cols:
        raise ConfigError(
            f"agent_view_mask: {view} does not fit the {rows}x{cols} grid (ma-gym requires "
            "0 < size <= grid size)"
        )
    try:
        probs = tuple(float(p) for p in prey_move_probs)
    except (TypeError, ValueError):
        probs = ()
    if len(probs) != N_ACTIONS or not all(math.isfinite(p) and p >= 0 for p in probs):
        raise ConfigError(
            f"prey_move_probs: must be 5 non-negative probabilities (down, left, up, right, "
            f"stay), got {prey_move_probs!r}"
        )
    # RandomState.choice's own tolerance.
    if abs(math.fsum(probs) - 1.0) > math.sqrt(np.finfo(np.float64).eps):
        raise ConfigError(f"prey_move_probs: must sum to 1, got {probs} (sum {sum(probs)})")
    return Geometry(
        rows=rows,
        cols=cols,
        n_agents=n_agents,
        n_preys=n_preys,
        penalty=_float_field("penalty", penalty),
        step_cost=_float_field("step_cost", step_cost),
        prey_capture_reward=_float_field("prey_capture_reward", prey_capture_reward),
        max_steps=_int_field("max_steps", max_steps, 1),
        view=view,
        prey_move_probs=probs,
    )


def _env_info(geo: Geometry) -> EnvInfo:
    return EnvInfo(
        n_agents=geo.n_agents,
        n_actions=N_ACTIONS,
        obs_size=geo.obs_size,
        state_size=geo.state_size,
        episode_limit=geo.max_steps,
        has_win=False,
    )


def _no_prey_cell_error(geo: Geometry) -> ConfigError:
    return ConfigError(
        f"n_agents: at reset the {geo.n_agents} predators block every cell where a prey may start "
        f"(rows/cols 0..{geo.rows - 2}/{geo.cols - 2}, away from predators); ma-gym would "
        "loop forever here. Use fewer n_agents/n_preys or a larger grid_shape."
    )


def _check_actions(actions: Any, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(actions)
    if a.shape != shape:
        raise ValueError(f"actions: expected shape {shape}, got {a.shape}")
    if a.dtype.kind not in "iu":
        raise ValueError(f"actions: expected integers in 0..{N_ACTIONS - 1}, got dtype {a.dtype}")
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


# --------------------------------------------------------------------------- single episode


class PredatorPrey(MultiAgentEnv):
    """One PredatorPrey episode at a time; the paper's settings by default.

    Parameters are ma-gym's constructor settings (see `make_geometry`); ``agent_view_mask``
    may be one odd int or an odd (rows, cols) pair. ma-gym itself hard-codes a radius of 2
    when building observations, so only 5x5 views match it; other odd sizes are centred
    views here. ``reset(seed)`` re-seeds the stream the way gym 0.20 seeds ma-gym.
    """

    backend = "native"
    obs_bounds = (0.0, 1.0)

    def __init__(self, seed: int | None = None, **params: Any) -> None:
        self.geometry = geo = make_geometry(**params)
        self.info = _env_info(geo)
        self.rng = gym_random_state(seed)
        self._n, self._p = geo.n_agents, geo.n_preys
        self._w = geo.width
        self._deltas = geo.deltas.tolist()
        self._cdf = geo.move_cdf.tolist()
        self._board = bytearray(geo.on_board.astype(np.uint8).tobytes())  # 1 = on the board
        self._reset_cells = geo.reset_cells.tolist()
        self._view = geo.view_table.tolist()
        self._off = geo.max_offset
        feats = geo.position_features
        self._feat = feats.tolist()
        self._obs_template = np.zeros((geo.n_cells, geo.obs_size), np.float32)
        self._obs_template[:, :2] = feats
        self._avail = np.ones((self._n, N_ACTIONS), bool)  # every action, always
        self._step_count: int | None = None

    # ---- public protocol

    def reset(self, seed: int | None = None) -> Step:
        """Start a new episode; a seed re-seeds the random stream (gym 0.20 style)."""
        if seed is not None:
            self.rng.seed(gym_seed_key(seed))  # re-seeding in place skips RandomState's set-up
        geo, rng, w = self.geometry, self.rng, self._w
        free = bytearray(self._board)  # 1 = empty board cell
        pred = bytearray(len(free))  # 1 = predator
        self._agents = []
        for _ in range(self._n):
            while True:
                c = geo.cell(rng.randint(0, geo.rows - 1), rng.randint(0, geo.cols - 1))
                if free[c]:
                    break
            free[c] = 0
            pred[c] = 1
            self._agents.append(c)
        self._preys = []

        def prey_may_start(c: int) -> bool:
            return bool(free[c]) and not (pred[c - 1] or pred[c + 1] or pred[c - w] or pred[c + w])

        for _ in range(self._p):
            tries = 0
            while True:
                c = geo.cell(rng.randint(0, geo.rows - 1), rng.randint(0, geo.cols - 1))
                if prey_may_start(c):
                    break
                tries += 1
                # ma-gym would draw forever when no cell qualifies; checking only after many
                # misses keeps the usual reset cheap and the draws unchanged.
                if tries % 200 == 0 and not any(map(prey_may_start, self._reset_cells)):
                    raise _no_prey_cell_error(geo)
            free[c] = 0
            self._preys.append(c)
        self._free, self._pred = free, pred
        self._alive = [True] * self._p
        self._captures = 0
        self._step_count = 0
        self._done = False
        return self._observe(0.0, [0.0] * self._n, False, False)

    def step(self, actions: Any) -> Step:
        """Apply one joint action (n_agents,) of ints in 0..4 (down, left, up, right, no-op)."""
        if self._step_count is None or self._done:
            raise RuntimeError("step: call reset() first (the episode has not started or is over)")
        acts = _check_actions(actions, (self._n,)).tolist()
        for i, a in enumerate(acts):
            if not 0 <= a < N_ACTIONS:
                raise ValueError(f"actions[{i}]: {a} is outside the action space 0..4")
        free, pred, agents, preys, alive = (
            self._free,
            self._pred,
            self._agents,
            self._preys,
            self._alive,
        )
        deltas, w = self._deltas, self._w
        self._step_count += 1

        for i, a in enumerate(acts):
            if a != NOOP:
                src = agents[i]
                dst = src + deltas[a]
                if free[dst]:
                    free[src], pred[src], free[dst], pred[dst] = 1, 0, 0, 1
                    agents[i] = dst

        reward = self.geometry.step_cost
        rng, cdf = self.rng, self._cdf
        for j in range(self._p):
            if not alive[j]:
                continue
            c = preys[j]
            n_adj = pred[c - 1] + pred[c + 1] + pred[c - w] + pred[c + w]
            if n_adj == 1:
                reward += self.geometry.penalty
            elif n_adj >= 2:
                reward += self.geometry.prey_capture_reward
                alive[j] = False
                free[c] = 1
                self._captures += 1
                continue
            move = NOOP
            for _ in range(5):
                # RandomState.choice(5, 1, p=probs) draws one double and returns
                # cdf.searchsorted(u, side="right"), which this loop computes.
                u = rng.random_sample()
                m = 0
                while m < NOOP and u >= cdf[m]:
                    m += 1
                t = c + deltas[m]
                if not (pred[t - 1] or pred[t + 1] or pred[t - w] or pred[t + w]):
                    move = m
                    break
            if move != NOOP:
                t = c + deltas[move]
                if free[t]:
                    free[c], free[t] = 1, 0
                    preys[j] = t

        terminated = not any(alive)
        truncated = not terminated and self._step_count >= self.geometry.max_steps
        self._done = terminated or truncated
        return self._observe(reward, [reward] * self._n, terminated, truncated)

    # ---- helpers

    def _observe(
        self, reward: float, agent_rewards: list, terminated: bool, truncated: bool
    ) -> Step:
        geo, agents = self.geometry, self._agents
        obs = self._obs_template[agents]
        t = self._step_count / geo.max_steps
        obs[:, -1] = t
        view, off = self._view, self._off
        state = []
        for a in agents:
            state += self._feat[a]
        for j, c in enumerate(self._preys):
            if self._alive[j]:
                state += self._feat[c]
                state.append(1.0)
                for i, a in enumerate(agents):
                    k = view[c - a + off]
                    if k >= 0:
                        obs[i, 2 + k] = 1.0
            else:
                state += (0.0, 0.0, 0.0)
        state.append(t)
        info = {"agent_rewards": np.array(agent_rewards), "captures": self._captures}
        return Step(
            obs,
            np.array(state, np.float32),
            self._avail.copy(),
            float(sum(agent_rewards)),  # Python's left-to-right sum, as over ma-gym's list
            terminated,
            truncated,
            info,
        )

    def _place(self, agents: list[tuple[int, int]], preys: list[tuple[int, int]]) -> Step:
        """Start an episode from given (row, col) positions (for tests and demonstrations)."""
        geo = self.geometry
        self.reset()
        self._free = free = bytearray(self._board)
        self._pred = pred = bytearray(len(free))
        self._agents = [geo.cell(r, c) for r, c in agents]
        self._preys = [geo.cell(r, c) for r, c in preys]
        if len(self._agents) != self._n or len(self._preys) != self._p:
            raise ValueError("_place: give one position per agent and per prey")
        for c in self._agents:
            free[c], pred[c] = 0, 1
        for c in self._preys:
            free[c] = 0
        return self._observe(0.0, [0.0] * self._n, False, False)

    def positions(self) -> tuple[list[tuple[int, int]], list[tuple[int, int] | None]]:
        """(row, col) of every predator and of every living prey (None once captured)."""

        def rc(c: int) -> tuple[int, int]:
            return c // self._w - _PAD, c % self._w - _PAD

        return [rc(c) for c in self._agents], [
            rc(c) if alive else None for c, alive in zip(self._preys, self._alive, strict=True)
        ]


# --------------------------------------------------------------------------- vector form


def _draw_tables() -> tuple[np.ndarray, np.ndarray]:
    """Outcome of a prey's "up to 5 draws" loop, looked up instead of looped.

    Index ``code * 32 + accept`` where ``code = sum_k m_k 5^k`` packs the next five candidate
    moves m_0..m_4 and bit m of ``accept`` says whether move m is acceptable. Returns the
    chosen move (NOOP when none is accepted) and the number of 32-bit words consumed (two per
    double drawn).
    """
    codes = np.arange(5**5)
    moves = (codes[:, None] // 5 ** np.arange(5)) % 5  # (3125, 5)
    accept = np.arange(32)
    ok = (accept[None, :, None] >> moves[:, None, :]) & 1  # (3125, 32, 5)
    first = ok.argmax(axis=2)
    found = ok.any(axis=2)
    chosen = np.where(
        found, np.take_along_axis(moves[:, None, :], first[..., None], 2)[..., 0], NOOP
    )
    used = np.where(found, 2 * first + 2, 10)
    return chosen.reshape(-1).astype(np.int64), used.reshape(-1).astype(np.int64)


class _WordStreams:
    """B MT19937 streams, each seeded like one `PredatorPrey`, consumed from a buffer.

    ``RandomState.randint(0, k)`` takes 32-bit words w & mask until one is < k (none if
    k == 1); ``random_sample`` takes two words a, b and returns ((a >> 5) 2^26 + (b >> 6)) /
    2^53. Reading pre-drawn words per episode by these rules replays each episode's stream
    exactly while the B episodes advance by different amounts, in array operations. For each
    word position the five prey moves the next five doubles would give are packed into a
    code (see `_draw_tables`), stored times 32.
    """

    def __init__(self, num_envs: int, cdf: np.ndarray, size: int = 2048) -> None:
        self.num_envs, self.size, self._cdf = num_envs, size, cdf
        self.words = np.zeros((num_envs, size), np.uint32)
        self.codes32 = np.zeros((num_envs, size), np.int64)
        self.ptr = np.full(num_envs, size, np.int64)  # everything consumed
        self.row_base = np.arange(num_envs, dtype=np.int64) * size
        self.rngs: list[np.random.RandomState] = []

    def seed(self, seeds: list[int]) -> None:
        if len(self.rngs) != len(seeds):
            self.rngs = [np.random.RandomState() for _ in seeds]
        for rng, s in zip(self.rngs, seeds, strict=True):
            rng.seed(gym_seed_key(s))
        self.ptr[:] = self.size
        self.refill(self.size)

    def refill(self, need: int) -> None:
        """Top up every buffer that has fewer than ``need`` unread words."""
        if self.ptr.max() <= self.size - need:
            return
        for b in np.flatnonzero(self.ptr > self.size - need):
            p = int(self.ptr[b])
            row = self.words[b]
            row[: self.size - p] = row[p:]
            row[self.size - p :] = self.rngs[b].randint(0, 2**32, size=p, dtype=np.uint32)
            u = ((row[:-1] >> 5).astype(np.float64) * 67108864.0 + (row[1:] >> 6)) / 2.0**53
            moves = np.searchsorted(self._cdf, u, side="right")
            n = moves.size - 8  # positions whose five doubles lie in the buffer
            code = moves[:n].copy()
            for k in range(1, 5):
                code += moves[2 * k : 2 * k + n] * 5**k
            self.codes32[b, :n] = code * 32
            self.ptr[b] = 0

    def randint(self, pending: np.ndarray, high: int) -> np.ndarray:
        """``randint(0, high)`` for the episodes in ``pending`` (others get 0, draw nothing)."""
        out = np.zeros(self.num_envs, np.int64)
        if high == 1:
            return out
        mask = (1 << (high - 1).bit_length()) - 1
        todo = pending.copy()
        flat = self.words.reshape(-1)
        while todo.any():
            self.refill(2)
            w = flat[self.row_base + self.ptr].astype(np.int64) & mask
            self.ptr += todo
            got = todo & (w < high)
            out[got] = w[got]
            todo &= ~got
        return out


class VectorPredatorPrey(VectorEnv):
    """B independent PredatorPrey episodes stepped together with arrays (B, n, ...).

    Episode ``b`` uses its own random stream seeded like ``PredatorPrey(seed=sub_seeds(seed,
    B)[b])`` and replays that single episode exactly under the same actions. No auto-reset:
    a finished episode stays frozen (its actions are ignored, reward 0, flags kept) until
    `reset`. Python loops run over agents and prey only (the rules are sequential in them);
    internal arrays keep the batch axis last so every operation runs over B contiguous values.
    """

    backend = "native"
    obs_bounds = (0.0, 1.0)
    _chosen, _used = _draw_tables()
    buffer_words = 2048  # pre-drawn 32-bit words per episode stream

    def __init__(self, num_envs: int, seed: int | None = None, **params: Any) -> None:
        self.num_envs = B = _int_field("num_envs", num_envs, 1)
        self.geometry = geo = make_geometry(**params)
        self.info = _env_info(geo)
        n, p, C, w = geo.n_agents, geo.n_preys, geo.n_cells, geo.width
        self._deltas = geo.deltas
        self._chosen_delta = self._deltas[self._chosen]  # cell offset of the chosen prey move
        self._base = np.arange(B, dtype=np.int64) * C
        self._size = B * C + 1  # one extra cell: writes of episodes that change nothing
        self._dummy = B * C
        self._board = np.append(np.tile(geo.on_board, B), False)
        self._reset_cells = geo.reset_cells
        # 5 candidate cells of a prey (the 5th is its own cell), batch last: (1, 5, 1)
        self._targets = self._deltas[None, :, None]
        self._reward_table = np.array([0.0, geo.penalty, geo.prey_capture_reward])
        self._step_cost = np.full(B, geo.step_cost)
        self._off = off = geo.max_offset
        # A captured prey is moved (for the observation) to a cell beyond the grid, out of
        # every agent's view and with all-zero state features.
        self._gone = C + off
        # Column of the observation a prey at offset d from an agent lights up; out of view
        # it points at the time column, which is written afterwards.
        self._view_col = np.full(self._gone + off + 1, geo.obs_size - 1, np.int64)
        table = geo.view_table
        self._view_col[: table.size] = np.where(table >= 0, table + 2, geo.obs_size - 1)
        self._obs_rows = (
            np.arange(B)[None, None, :] * n + np.arange(n)[:, None, None]
        ) * geo.obs_size  # (n, 1, B): flat start of agent i's row in episode b
        self._obs_template = np.zeros((C, geo.obs_size), np.float32)
        self._obs_template[:, :2] = geo.position_features
        self._feat3 = np.zeros((self._gone + 1, 3), np.float32)  # (row, col, alive) per cell
        self._feat3[:C] = np.concatenate([geo.position_features, geo.on_board[:, None]], 1)
        self._streams = _WordStreams(B, geo.move_cdf, self.buffer_words)
        self._avail = np.ones((B, n, N_ACTIONS), bool)  # every action, always
        self._free = self._board.copy()
        self._pred = np.zeros(self._size, np.uint8)
        self._near = np.zeros(self._size, np.uint8)  # predators in each cell's 4-neighbourhood
        self._w = w
        self._agents = np.zeros((n, B), np.int64)  # flat cells; episode b owns b*C..b*C+C-1
        self._preys = np.zeros((p, B), np.int64)
        self._alive = np.zeros((p, B), bool)
        self._t = np.zeros(B, np.int64)
        self._captures = np.zeros(B, np.int64)
        self._terminated = np.zeros(B, bool)
        self._truncated = np.zeros(B, bool)
        self._started = False
        self._streams.seed(sub_seeds(seed, B))

    @property
    def done(self) -> np.ndarray:
        return self._terminated | self._truncated

    def reset(self, seed: int | None = None, seeds: Any = None) -> Step:
        """Start B new episodes; a seed re-seeds all B streams from ``sub_seeds(seed, B)``,
        ``seeds`` (B of them) seeds episode b exactly as ``PredatorPrey.reset(seed=seeds[b])``."""
        geo, B, st, w = self.geometry, self.num_envs, self._streams, self._w
        if seeds is not None:
            st.seed(_episode_seeds(seeds, B))
        elif seed is not None:
            st.seed(sub_seeds(seed, B))
        free = self._free
        free[:] = self._board
        pred = np.zeros(self._size, bool)
        for i in range(geo.n_agents + geo.n_preys):
            is_prey = i >= geo.n_agents
            if is_prey:
                cells = self._base[:, None] + self._reset_cells
                nb = pred[cells - 1] | pred[cells + 1] | pred[cells - w] | pred[cells + w]
                if not (free[cells] & ~nb).any(axis=1).all():
                    raise _no_prey_cell_error(geo)
            pending = np.ones(B, bool)
            chosen = np.zeros(B, np.int64)
            while pending.any():
                r = st.randint(pending, geo.rows - 1)
                c = st.randint(pending, geo.cols - 1)
                cell = self._base + (r + _PAD) * w + c + _PAD
                ok = pending & free[cell]
                if is_prey:
                    ok &= ~(pred[cell - 1] | pred[cell + 1] | pred[cell - w] | pred[cell + w])
                chosen[ok] = cell[ok]
                pending &= ~ok
            free[chosen] = False
            if is_prey:
                self._preys[i - geo.n_agents] = chosen
            else:
                pred[chosen] = True
                self._agents[i] = chosen
        self._alive[:] = True
        self._t[:] = 0
        self._captures[:] = 0
        self._terminated[:] = False
        self._truncated[:] = False
        self._started = True
        return self._observe(np.zeros(B))

    def step(self, actions: Any) -> Step:
        """Apply joint actions (B, n_agents) of ints in 0..4; finished episodes ignore theirs."""
        if not self._started:
            raise RuntimeError("step: call reset() first")
        geo, B, n, w = self.geometry, self.num_envs, self.geometry.n_agents, self._w
        a = _check_actions(actions, (B, n))
        # One reduction: negative ints viewed as unsigned are huge.
        if a.view(f"u{a.itemsize}").max() >= N_ACTIONS:
            bad = np.argwhere((a < 0) | (a >= N_ACTIONS))[0]
            raise ValueError(
                f"actions[{bad[0]}, {bad[1]}]: {a[tuple(bad)]} is outside the action space 0..4"
            )
        active = ~(self._terminated | self._truncated)
        moves = self._deltas[a.T] * active  # (n, B); frozen episodes stand still
        self._t += active
        free, agents, preys, alive = self._free, self._agents, self._preys, self._alive

        for i in range(n):
            pos = agents[i]  # a view: updated in place
            dst = pos + moves[i]
            ok = free[dst]  # a no-op's dst == pos is occupied: it stays
            free[pos] = True
            np.copyto(pos, dst, where=ok)
            free[pos] = False

        # Predators are fixed from here on: count them around every cell once.
        pred, near, N = self._pred, self._near, self._size
        pred[:] = 0
        pred[agents] = 1
        inner = near[w : N - w]
        np.add(pred[w - 1 : N - w - 1], pred[w + 1 : N - w + 1], out=inner)
        inner += pred[: N - 2 * w]
        inner += pred[2 * w :]
        counts = near[preys[:, None, :] + self._targets]  # (p, 5, B); [:, NOOP] = own cell
        # (p, B): bit m set where move m is acceptable (no predator around its target)
        accept = np.packbits(counts == 0, axis=1, bitorder="little")[:, 0]
        live = alive & active
        here = np.minimum(counts[:, NOOP], 2) * live  # 0 none/dead, 1 penalty, 2 capture
        increments = self._reward_table[here]
        captured = here == 2
        moving = here < 2
        moving &= live

        st = self._streams
        st.refill(10 * geo.n_preys + 10)
        codes = st.codes32.reshape(-1)
        reward = self._step_cost.copy()
        for j in range(geo.n_preys):
            reward += increments[j]  # ma-gym's order of float additions
            src = preys[j]
            free[np.where(captured[j], src, self._dummy)] = True
            key = codes[st.row_base + st.ptr] + accept[j]
            st.ptr += self._used[key] * moving[j]
            dst = src + self._chosen_delta[key]
            go = moving[j] & free[dst]
            free[np.where(go, src, self._dummy)] = True
            free[np.where(go, dst, self._dummy)] = False
            preys[j] = np.where(go, dst, src)
        alive &= ~captured
        for j in range(geo.n_preys):
            self._captures += captured[j]

        terminated = active & (self._captures == geo.n_preys)
        truncated = active & ~terminated & (self._t >= geo.max_steps)
        self._terminated |= terminated
        self._truncated |= truncated
        reward *= active
        return self._observe(reward)

    def _observe(self, reward: np.ndarray) -> Step:
        geo, B, n = self.geometry, self.num_envs, self.geometry.n_agents
        agents = self._agents - self._base  # (n, B) cells within the episode's block
        preys = np.where(self._alive, self._preys - self._base, self._gone)
        t = self._t / geo.max_steps
        obs = self._obs_template[agents.T]  # (B, n, obs_size): positions, empty view
        col = self._view_col[preys[None, :, :] - (agents - self._off)[:, None, :]]  # (n, p, B)
        obs.reshape(-1)[self._obs_rows + col] = 1.0
        obs[:, :, -1] = t[:, None]  # also clears the writes of prey out of view
        state = np.empty((B, geo.state_size), np.float32)
        state[:, : 2 * n] = obs[:, :, :2].reshape(B, -1)
        state[:, 2 * n : -1] = self._feat3[preys.T].reshape(B, -1)
        state[:, -1] = t
        # ma-gym's team reward: Python's left-to-right sum over n equal per-agent rewards.
        team = reward + 0.0
        for _ in range(n - 1):
            team = team + reward
        info = {
            "agent_rewards": np.repeat(reward, n).reshape(B, n),
            "captures": self._captures.copy(),
        }
        return Step(
            obs,
            state,
            self._avail.copy(),
            team,
            self._terminated.copy(),
            self._truncated.copy(),
            info,
        )


# --------------------------------------------------------------------------- scripted policy


@functools.lru_cache(maxsize=8)
def _chase_table(view: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per view cell: its distance from the centre, and the chasing action toward it."""
    vr, vc = view
    k = np.arange(vr * vc)
    dr, dc = k // vc - (vr - 1) // 2, k % vc - (vc - 1) // 2
    dist = np.abs(dr) + np.abs(dc)
    toward = np.where(np.abs(dr) >= np.abs(dc), np.where(dr > 0, 0, 2), np.where(dc > 0, 3, 1))
    # Unseen cells get a distance larger than any real one so argmin skips them.
    return np.append(dist, vr + vc), np.where(dist <= 1, NOOP, toward)


def chase_actions(
    obs: np.ndarray, rng: np.random.Generator, view: tuple[int, int] = (5, 5)
) -> np.ndarray:
    """A scripted baseline from observations alone: step toward the nearest visible prey
    (rows first on ties), wait (no-op) once next to it, act at random when none is visible.

    obs (..., obs_size) -> actions (...) int64.
    """
    dist, act = _chase_table(tuple(view))
    size = dist.size - 1
    seen = obs[..., 2 : 2 + size] > 0.5
    nearest = np.where(seen, dist[:-1], dist[-1]).argmin(axis=-1)
    random = rng.integers(0, N_ACTIONS, size=nearest.shape)
    return np.where(seen.any(axis=-1), act[nearest], random)
