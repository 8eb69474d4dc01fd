"""Steps per second of ficomm's PredatorPrey (single and vectorised) against ma-gym 0.0.14.

All contenders run the paper's setting (7x7, 4 predators, 2 prey, penalty -0.75) under
pre-drawn uniform random actions (so the policy costs nothing), resets included, in
interleaved rounds so that machine load hits them alike; medians are reported. For the vector
form, env-steps = the summed lengths of the episodes (frozen slots do not count). Rates are
given per wall-clock second and per CPU second of this process (`time.process_time`): on a
shared machine the second is the steadier measure of the code's own speed.

    python bench/bench_predator_prey.py [--seconds 1.5] [--rounds 5] [--batch 1 16 64 256]

Writes bench/results/predator_prey.md (or --out). Targets: single form >= ma-gym; vector
form at 64 episodes >= 20x ma-gym.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from machine import machine

from ficomm.envs.predator_prey import PredatorPrey, VectorPredatorPrey

PAPER = {"grid_shape": (7, 7), "n_agents": 4, "n_preys": 2, "penalty": -0.75}
N_ACTIONS_DRAWN = 200_000


def timed(seconds: float, chunk: Callable[[], int]) -> tuple[float, float]:
    """Run `chunk` (which returns env-steps done) for about `seconds`; (steps/s wall,
    steps/s CPU)."""
    steps = 0
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        steps += chunk()
    return steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu)


def bench_magym(seconds: float, actions: list) -> tuple[float, float]:
    import gym
    import ma_gym  # noqa: F401 - registers ma_gym:PredatorPrey7x7-v0

    env = gym.make("ma_gym:PredatorPrey7x7-v0", **PAPER)
    env.seed(0)
    env.reset()
    k = 0

    def chunk() -> int:
        nonlocal k
        for _ in range(1000):
            if all(env.step(actions[k])[2]):
                env.reset()
            k = (k + 1) % N_ACTIONS_DRAWN
        return 1000

    return timed(seconds, chunk)


def bench_single(seconds: float, actions: np.ndarray) -> tuple[float, float]:
    env = PredatorPrey(seed=0)
    env.reset()
    k = 0

    def chunk() -> int:
        nonlocal k
        for _ in range(1000):
            s = env.step(actions[k])
            if s.terminated or s.truncated:
                env.reset()
            k = (k + 1) % N_ACTIONS_DRAWN
        return 1000

    return timed(seconds, chunk)


def bench_vector(seconds: float, num_envs: int, actions: np.ndarray) -> tuple[float, float, float]:
    """Whole batches of episodes: (env-steps/s wall, env-steps/s CPU, batch slots/s wall)."""
    env = VectorPredatorPrey(num_envs, seed=0)
    per_batch = actions[: (N_ACTIONS_DRAWN // num_envs) * num_envs].reshape(-1, num_envs, 4)
    k = slots = 0

    def chunk() -> int:
        nonlocal k, slots
        steps = 0
        env.reset()
        while not env.done.all():
            steps += int((~env.done).sum())
            env.step(per_batch[k])
            slots += num_envs
            k = (k + 1) % len(per_batch)
        return steps

    start = time.perf_counter()
    wall, cpu = timed(seconds, chunk)
    return wall, cpu, slots / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median reported)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--out", default="bench/results/predator_prey.md")
    args = ap.parse_args()
    if 64 not in args.batch:
        args.batch.append(64)

    try:
        import ma_gym  # noqa: F401

        have_magym = True
    except ImportError:
        have_magym = False
        print("ma_gym is not installed (bash .ci/setup test installs it): no reference numbers")

    actions = np.random.default_rng(0).integers(0, 5, size=(N_ACTIONS_DRAWN, 4))
    action_lists = actions.tolist()
    load_before = os.getloadavg()
    names = (["ma-gym 0.0.14"] if have_magym else []) + ["ficomm PredatorPrey"]
    names += [f"ficomm VectorPredatorPrey B={b}" for b in args.batch]
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    slots: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.rounds):
        for name in names:
            if name.startswith("ma-gym"):
                w, c = bench_magym(args.seconds, action_lists)
            elif name == "ficomm PredatorPrey":
                w, c = bench_single(args.seconds, actions)
            else:
                w, c, s = bench_vector(args.seconds, int(name.rsplit("=", 1)[1]), actions)
                slots[name].append(s)
            wall[name].append(w)
            cpu[name].append(c)
        print(
            f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {wall[k][-1]:,.0f}" for k in names)
        )
    load_after = os.getloadavg()

    mw = {k: statistics.median(v) for k, v in wall.items()}
    mc = {k: statistics.median(v) for k, v in cpu.items()}
    ref = "ma-gym 0.0.14" if have_magym else None
    rows = []
    for name in names:
        ratio_w = f"{mw[name] / mw[ref]:.1f}x" if ref else "n/a"
        ratio_c = f"{mc[name] / mc[ref]:.1f}x" if ref else "n/a"
        extra = f"{statistics.median(slots[name]):,.0f}" if slots[name] else ""
        rows.append(
            f"| {name} | {mw[name]:,.0f} | {ratio_w} | {mc[name]:,.0f} | {ratio_c} | {extra} |"
        )
    verdict = []
    if ref:
        for label, name, need in (
            ("single form >= ma-gym", "ficomm PredatorPrey", 1.0),
            ("vector form at B=64 >= 20x ma-gym", "ficomm VectorPredatorPrey B=64", 20.0),
        ):
            w, c = mw[name] / mw[ref], mc[name] / mc[ref]
            met = "MET" if min(w, c) >= need else "NOT MET"
            verdict.append(f"- {label}: {met} ({w:.1f}x wall-clock, {c:.1f}x per CPU second)")
    info = machine()
    command = "python bench/bench_predator_prey.py " + " ".join(sys.argv[1:])
    text = "\n".join(
        [
            "# PredatorPrey speed: ficomm vs ma-gym 0.0.14",
            "",
            f"- date (UTC): {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M}",
            f"- command: `{command.strip()}`",
            f"- machine: `{info['uname']}`",
            f"- CPU: {info['cpu']}, {info['cores']} logical cores; one process, one thread",
            f"- load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}, "
            f"after: {' '.join(f'{x:.2f}' for x in load_after)}",
            f"- Python {platform.python_version()}, numpy {np.__version__}",
            "- setting: the paper's (7x7, 4 predators, 2 prey, penalty -0.75), uniform random "
            "actions drawn beforehand, resets included",
            f"- {args.rounds} interleaved rounds of {args.seconds} s per contender; medians",
            "",
            "| contender | env-steps/s (wall) | vs ma-gym | env-steps per CPU s | vs ma-gym "
            "| batch slots/s (wall) |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "env-steps count each episode's own steps; a vector batch runs until its longest "
            "episode ends, so 'batch slots/s' (B x batch steps) also counts frozen slots. "
            "Other jobs may share the machine (see the load average): wall-clock rates then "
            "include time this process waited for a core; per-CPU-second rates do not.",
            "",
            "Targets (both measures must meet them):",
            *verdict,
            "",
        ]
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
