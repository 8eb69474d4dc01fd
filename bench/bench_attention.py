"""The attention channel's cost per env step against the concatenation channel, CPU, one thread.

NPS+COMM on PredatorPrey (4 agents, H 64), the contenders interleaved in one process:
concat on the compiled kernel (what kernel=auto runs), concat on the torch layers, and
attention (torch layers only: the kernel has no attention). Per env step of training =
collecting episodes (acting + simulator) per env step + one gradient step (minibatch 32
episodes x 100 steps) per 100-step episode. Times are this process's CPU time (one thread),
which a shared machine's load inflates far less than wall time; the ratios are what to read.

    python bench/bench_attention.py            # writes bench/results/attention.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine

from ficomm.buffer import Batch, Episode
from ficomm.envs import make_env
from ficomm.learner import Learner
from ficomm.methods import layout_for
from ficomm.nets import AgentNets
from ficomm.rollout import EpsilonSchedule, Policy, collect_episode

N, OBS, A, H, B, T = 4, 28, 5, 64, 32, 100
CONTENDERS = {  # name -> (channel, kernel)
    "concat, fused": ("concat", "fused"),
    "concat, torch": ("concat", "torch"),
    "attention, torch": ("attention", "torch"),
}


def random_batch(rng: np.random.Generator) -> Batch:
    """A full minibatch (every episode T steps) with PredatorPrey-like contents."""
    return Batch(
        obs=rng.integers(0, 7, (B, T + 1, N, OBS)).astype(np.float32) / 6,
        avail=np.ones((B, T + 1, N, A), bool),
        actions=rng.integers(0, A, (B, T, N)),
        reward=rng.normal(size=(B, T)).astype(np.float32),
        terminal=np.zeros((B, T), bool),
        mask=np.ones((B, T), np.float32),
    )


def contenders() -> dict[str, tuple[Policy, Learner]]:
    out = {}
    for name, (channel, kernel) in CONTENDERS.items():
        torch.manual_seed(0)
        nets = AgentNets(layout_for("nps", True, channel=channel), N, OBS, A, H, kernel=kernel)
        out[name] = (Policy(nets), Learner(nets, lr=5e-4))
    return out


def interleaved(fns: dict, reps: int) -> dict[str, float]:
    """name -> median CPU seconds, the contenders alternating (one warm-up call each)."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t = time.process_time()
            f()
            times[k].append(time.process_time() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=1000, help="env steps collected per repetition")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "attention.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    env = make_env("predator_prey", "native", seed=0)
    nets = contenders()
    batch = random_batch(np.random.default_rng(0))
    load_before = os.getloadavg()

    def collect(policy):
        ep, rng = Episode.empty(env.info), np.random.default_rng(0)
        eps = EpsilonSchedule(1.0, 0.05, 50_000)

        def f():  # the same episodes for every contender (same seeds, same exploration)
            steps = 0
            while steps < args.steps:
                collect_episode(env, policy, ep, eps, rng, steps, True)
                steps += ep.length

        return f

    acting = interleaved({k: collect(pol) for k, (pol, _) in nets.items()}, args.reps)
    grad = interleaved(
        {k: (lambda le=le: le.train_step(batch)) for k, (_, le) in nets.items()}, args.reps
    )
    load_after = os.getloadavg()

    per_step = {k: acting[k] / args.steps + grad[k] / T for k in nets}
    m = machine()
    lines = [
        "# The attention channel against concatenation (`bench/bench_attention.py`)",
        "",
        f"- machine: `{m['uname']}`",
        f"- CPU: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {torch.__version__}",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min); one thread",
        f"- command: `{' '.join(['python', 'bench/bench_attention.py', *sys.argv[1:]])}`",
        "",
        f"NPS+COMM on PredatorPrey, {N} agents, H {H}; acting = collecting {args.steps} env steps "
        f"of epsilon-greedy episodes; gradient step = minibatch {B} episodes x {T} steps; per env "
        f"step = acting / {args.steps} + gradient step / {T} (one gradient step per {T}-step "
        f"episode); CPU time of this process, medians of {args.reps} interleaved repetitions.",
        "",
        "| channel, implementation | acting us / env step | gradient step ms | "
        "training us / env step | attention / this |",
        "|---|---|---|---|---|",
    ]
    att = per_step["attention, torch"]
    for k in nets:
        lines.append(
            f"| {k} | {acting[k] / args.steps * 1e6:.0f} | {grad[k] * 1e3:.1f} | "
            f"{per_step[k] * 1e6:.0f} | {att / per_step[k]:.2f} |"
        )
    lines.append("")
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
