"""Replay of whole episodes, padded to the episode limit, in preallocated numpy arrays.

Storage per episode (T = episode limit): observations and availability masks at steps
0..T (the step after the last action included, so "next" values are a shifted view and are
stored once), actions, team reward and terminal flag at steps 0..T-1, and the length;
padded steps are all zero. Observations go through `ObsCodec`, which stores them as uint8
codes into a table of float32 values when an environment uses few distinct values (exactly,
e.g. PredatorPrey's multiples of 1/6 and 0.01) and as float32 otherwise. Memory is fixed
when the buffer is built and never grows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ficomm.envs.base import EnvInfo


class ObsCodec:
    """Lossless uint8 coding of observations while they hold at most 256 distinct values.

    Codes index `table`; a value not yet in the table is appended (codes never change).
    When a 257th distinct value appears the store switches to float32 for good.
    """

    def __init__(self, shape: tuple[int, ...]):
        self.codes: np.ndarray | None = np.zeros(shape, np.uint8)
        self.raw: np.ndarray | None = None
        self.table = np.zeros(0, np.float32)
        self._index: dict[float, int] = {}
        self._new_table = True  # 0.0 is added on first use so zeroed padding decodes to 0
        self._used = 0  # slots written so far (the rest of the zeroed arrays is untouched)

    @property
    def nbytes(self) -> int:
        return (self.codes if self.codes is not None else self.raw).nbytes

    def _encode(self, values: np.ndarray) -> np.ndarray | None:
        if self._new_table:
            self._add(np.float32(0.0))
            self._new_table = False
        uniq, inverse = np.unique(values, return_inverse=True)
        for v in uniq:
            if float(v) not in self._index:
                if len(self.table) == 256:
                    return None
                self._add(v)
        lut = np.array([self._index[float(v)] for v in uniq], np.uint8)
        return lut[inverse.reshape(values.shape)]

    def _add(self, v: np.float32) -> None:
        self._index[float(v)] = len(self.table)
        self.table = np.append(self.table, np.float32(v))

    def write(self, slot: int, values: np.ndarray) -> None:
        """Store one episode's (padded) observations at `slot`."""
        self._used = max(self._used, slot + 1)
        if self.codes is not None:
            coded = self._encode(values)
            if coded is not None:
                self.codes[slot] = coded
                return
            # switch to float32 for good; np.zeros leaves unwritten pages unallocated
            self.raw = np.zeros(self.codes.shape, np.float32)
            self.raw[: self._used] = self.table[self.codes[: self._used]]
            self.codes = None
        self.raw[slot] = values

    def read(self, index: np.ndarray, steps: int) -> np.ndarray:
        """Episodes `index`, steps 0..steps-1, as float32."""
        if self.codes is not None:
            return self.table[self.codes[index, :steps]]
        return self.raw[index, :steps]

    def state(self, size: int) -> dict:
        if self.codes is not None:
            return {"codes": self.codes[:size], "table": self.table.copy()}
        return {"raw": self.raw[:size]}

    def load(self, state: dict, size: int) -> None:
        self._used = size
        if "codes" in state:
            self.codes[:size] = state["codes"]
            self.table = np.asarray(state["table"], np.float32)
            self._index = {float(v): i for i, v in enumerate(self.table)}
            self._new_table = False
        else:
            self.raw = np.zeros(self.codes.shape, np.float32)
            self.codes = None
            self.raw[:size] = state["raw"]


@dataclass
class Episode:
    """One episode being collected, padded to the limit (reused between episodes)."""

    obs: np.ndarray  # (T+1, n, obs) float32
    avail: np.ndarray  # (T+1, n, A) bool
    actions: np.ndarray  # (T, n) int64
    reward: np.ndarray  # (T,) float32
    terminal: np.ndarray  # (T,) bool
    length: int = 0

    @classmethod
    def empty(cls, info: EnvInfo) -> Episode:
        T, n = info.episode_limit, info.n_agents
        return cls(
            obs=np.zeros((T + 1, n, info.obs_size), np.float32),
            avail=np.zeros((T + 1, n, info.n_actions), bool),
            actions=np.zeros((T, n), np.int64),
            reward=np.zeros(T, np.float32),
            terminal=np.zeros(T, bool),
        )

    def clear_tail(self) -> None:
        """Zero the steps after the episode's end (padding is all zero)."""
        L = self.length
        self.obs[L + 1 :] = 0
        self.avail[L + 1 :] = False
        self.actions[L:] = 0
        self.reward[L:] = 0
        self.terminal[L:] = False


@dataclass
class Batch:
    """A minibatch cut to its longest episode: time axis T = max length in the batch."""

    obs: np.ndarray  # (B, T+1, n, obs)
    avail: np.ndarray  # (B, T+1, n, A)
    actions: np.ndarray  # (B, T, n)
    reward: np.ndarray  # (B, T)
    terminal: np.ndarray  # (B, T)
    mask: np.ndarray  # (B, T) 1 for real steps, 0 for padding


class EpisodeBuffer:
    """FIFO replay of `capacity` episodes; uniform sampling with replacement."""

    def __init__(self, capacity: int, info: EnvInfo):
        T, n = info.episode_limit, info.n_agents
        self.capacity, self.limit = capacity, T
        self.obs = ObsCodec((capacity, T + 1, n, info.obs_size))
        self.avail = np.zeros((capacity, T + 1, n, info.n_actions), bool)
        act_dtype = np.uint8 if info.n_actions <= 256 else np.int16
        self.actions = np.zeros((capacity, T, n), act_dtype)
        self.reward = np.zeros((capacity, T), np.float32)
        self.terminal = np.zeros((capacity, T), bool)
        self.length = np.zeros(capacity, np.int32)
        self.ptr = 0
        self.size = 0

    @property
    def nbytes(self) -> int:
        arrays = (self.avail, self.actions, self.reward, self.terminal, self.length)
        return self.obs.nbytes + sum(a.nbytes for a in arrays)

    def add(self, ep: Episode) -> None:
        """Store a finished episode, overwriting the oldest when full."""
        ep.clear_tail()
        i = self.ptr
        self.obs.write(i, ep.obs)
        self.avail[i] = ep.avail
        self.actions[i] = ep.actions
        self.reward[i] = ep.reward
        self.terminal[i] = ep.terminal
        self.length[i] = ep.length
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """`min(batch_size, size)` episodes drawn uniformly with replacement."""
        idx = rng.integers(0, self.size, min(batch_size, self.size))
        T = int(self.length[idx].max())
        steps = np.arange(T)
        return Batch(
            obs=self.obs.read(idx, T + 1),
            avail=self.avail[idx, : T + 1],
            actions=self.actions[idx, :T],
            reward=self.reward[idx, :T],
            terminal=self.terminal[idx, :T],
            mask=(steps[None, :] < self.length[idx, None]).astype(np.float32),
        )

    def state(self) -> dict:
        """The filled part, for a checkpoint (views, not copies: saved right away)."""
        n = self.size
        return {
            "obs": self.obs.state(n),
            "avail": self.avail[:n],
            "actions": self.actions[:n],
            "reward": self.reward[:n],
            "terminal": self.terminal[:n],
            "length": self.length[:n],
            "ptr": self.ptr,
            "size": n,
        }

    def load(self, state: dict) -> None:
        n = int(state["size"])
        if n > self.capacity:
            raise ValueError(f"checkpoint buffer holds {n} episodes, capacity is {self.capacity}")
        self.obs.load(state["obs"], n)
        for key in ("avail", "actions", "reward", "terminal", "length"):
            getattr(self, key)[:n] = np.asarray(state[key])
        self.ptr, self.size = int(state["ptr"]), n
