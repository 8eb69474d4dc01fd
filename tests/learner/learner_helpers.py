"""Shared helpers for the learner tests: random minibatches and subprocess runs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ficomm.buffer import Batch

PP = {"n": 4, "obs": 28, "actions": 5}  # PredatorPrey sizes

# A small, fast run configuration for end-to-end tests of the training loop.
SMALL_RUN = [
    "env=predator_prey",
    "hidden=16",
    "batch_size=4",
    "buffer_size=20",
    "eval_episodes=4",
    "eps_anneal=2000",
    "wandb_mode=disabled",
    "threads=1",
]


def random_batch(rng, B=3, T=7, n=4, obs=28, A=5, lengths=None) -> Batch:
    """A padded minibatch with random contents; episode b has lengths[b] real steps."""
    lengths = np.asarray(lengths if lengths is not None else [T] * B)
    steps = np.arange(T)
    mask = (steps[None] < lengths[:, None]).astype(np.float32)
    o = rng.integers(0, 7, (B, T + 1, n, obs)).astype(np.float32) / 6
    for b, L in enumerate(lengths):
        o[b, L + 1 :] = 0  # padding after the final next-observation
    terminal = steps[None] == (lengths[:, None] - 1)
    return Batch(
        obs=o,
        avail=np.ones((B, T + 1, n, A), bool),
        actions=rng.integers(0, A, (B, T, n)) * mask[..., None].astype(np.int64),
        reward=(rng.normal(size=(B, T)) * mask).astype(np.float32),
        terminal=terminal,
        mask=mask,
    )


def run_train(args: list[str], timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    """`python -m ficomm.train ARGS` in a subprocess (fresh interpreter, like a user)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("WANDB_MODE", None)
    return subprocess.run(
        [sys.executable, "-m", "ficomm.train", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **popen,
    )


def signal_when(args: list[str], csv: Path, rows: int, sig: int) -> tuple[int, str]:
    """Start `ficomm train ARGS`, send `sig` once `csv` has `rows` lines (header included);
    returns its exit code and stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ficomm.train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (
        csv.exists() and len(csv.read_text().splitlines()) >= rows
    ):
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def read_metrics(path: Path, drop_wall_clock: bool = True) -> list[dict[str, str]]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if drop_wall_clock:
        for row in rows:
            row.pop("wall_time")
            row.pop("env_steps_per_sec")
    return rows


def per_owner_losses(learner, seed=0):
    """The learner's per-owner TD losses on one random batch (3 episodes of lengths 6, 4, 2)."""
    import torch

    from ficomm.learner import batch_to_tensors

    b = random_batch(np.random.default_rng(seed), B=3, T=6, lengths=[6, 4, 2])
    return learner.losses(batch_to_tensors(b, torch.device("cpu")))


def grads_of(loss, nets):
    """{parameter name: gradient of `loss`} over every parameter of `nets` (zeros if unused)."""
    import torch

    params = dict(nets.named_parameters())
    gs = torch.autograd.grad(loss, list(params.values()), allow_unused=True, retain_graph=True)
    return {
        k: (torch.zeros_like(p) if g is None else g)
        for (k, p), g in zip(params.items(), gs, strict=True)
    }
