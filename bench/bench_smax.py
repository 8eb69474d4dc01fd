"""Speed of the ``smax`` backend (3s_vs_5z on jaxmarl's SMAX), alone and under training.

Measures, in one process (so JAX compiles each kernel once):
  1. environment steps per second with uniformly random valid actions: one episode at a time
     (``SmaxEnv``, the learner's training loop) and B episodes at once (``VectorSmaxEnv``, the
     learner's evaluation); compile times are reported apart;
  2. the random policy's return, win rate and episode length (SMAX's reward scale);
  3. ``ficomm train`` on SMAX for each of the four methods at H 64: env steps per second over
     the run (acting, learning and evaluation; W&B disabled).
Writes a markdown report naming the machine, the load and the command.

    python bench/bench_smax.py                          # the defaults below
    python bench/bench_smax.py --train-budget 5000 --out bench/results/smax.md
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine

METHODS = [("ps", False), ("ps", True), ("nps", False), ("nps", True)]


def machine_lines() -> list[str]:
    info = machine()
    return [
        f"- machine: `{info['uname']}`",
        f"- CPU: {info['cpu']}, {info['cores']} logical cores",
        f"- Python {info['python']}",
    ]


def random_actions(avail: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (rng.random(avail.shape) * avail).argmax(-1)


def bench_single(steps: int, seed: int) -> dict:
    from ficomm.envs import make_env

    t = time.perf_counter()
    env = make_env("3s_vs_5z", "smax", seed=seed)
    built = time.perf_counter() - t
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    s = env.reset()
    s = env.step(random_actions(s.avail, rng))  # compiles reset and step
    compile_s = time.perf_counter() - t
    n, t = 0, time.perf_counter()
    while n < steps:
        if s.terminated or s.truncated:
            s = env.reset()
        s = env.step(random_actions(s.avail, rng))
        n += 1
    return {"import_build_s": built, "compile_s": compile_s, "sps": n / (time.perf_counter() - t)}


def bench_vector(batch: int, episodes: int, seed: int) -> dict:
    """Whole batches of episodes, to the end of the last one (as evaluation does)."""
    from ficomm.envs import make_vector_env

    env = make_vector_env("3s_vs_5z", "smax", batch, seed=seed)
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    s = env.reset()
    env.step(random_actions(s.avail, rng))
    compile_s = time.perf_counter() - t
    returns, wins, lengths, calls = [], [], [], 0
    t = time.perf_counter()
    for _ in range(max(1, episodes // batch)):
        s = env.reset()
        ret, length = np.zeros(batch), np.zeros(batch, int)
        while not env.done.all():
            live = ~env.done
            s = env.step(random_actions(s.avail, rng))
            ret += s.reward
            length += live
            calls += 1
        returns += ret.tolist()
        wins += np.asarray(s.info["won"]).tolist()
        lengths += length.tolist()
    wall = time.perf_counter() - t
    return {
        "compile_s": compile_s,
        "episodes": len(returns),
        "live_sps": sum(lengths) / wall,  # steps of unfinished episodes only
        "slot_sps": calls * batch / wall,  # every slot of every call, frozen ones included
        "return_mean": float(np.mean(returns)),
        "return_max": float(np.max(returns)),
        "win_rate": float(np.mean(wins)),
        "length_mean": float(np.mean(lengths)),
    }


def bench_train(share: str, comm: bool, budget: int, eval_interval: int, seed: int) -> dict:
    from ficomm import checkpoint
    from ficomm.train import main as train_main

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        argv = [
            f"out={out}",
            "env=3s_vs_5z",
            "backend=smax",
            f"share={share}",
            f"comm={str(comm).lower()}",
            "hidden=64",
            f"seed={seed}",
            f"budget={budget}",
            f"eval_interval={eval_interval}",
            "wandb_mode=disabled",
        ]
        t = time.perf_counter()
        rc = train_main(argv)
        wall = time.perf_counter() - t
        if rc != 0:
            raise RuntimeError(f"ficomm train {' '.join(argv)} exited {rc}")
        with open(out / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        # metrics.csv ends at the last evaluation; the finished checkpoint has the final count
        counters = checkpoint.load(out / "checkpoint")["counters"]
    steps, train_wall = int(counters["env_steps"]), float(counters["wall_time"])
    rates = [float(r["env_steps_per_sec"]) for r in rows if r["env_steps_per_sec"]]
    return {
        "steps": steps,
        "wall_s": wall,
        "sps": steps / wall,
        "loop_sps": steps / train_wall,
        "logged_sps": rates,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--single-steps", type=int, default=5000)
    p.add_argument("--batches", type=int, nargs="+", default=[20, 64])
    p.add_argument("--episodes", type=int, default=256, help="random episodes per batch size")
    p.add_argument("--train-budget", type=int, default=10000)
    p.add_argument("--eval-interval", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "smax.md")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    command = shlex.join(
        ["python", "bench/bench_smax.py", *(sys.argv[1:] if argv is None else argv)]
    )
    load_before = os.getloadavg()
    started = dt.datetime.now(dt.UTC)

    single = bench_single(args.single_steps, args.seed)
    print("single", single, flush=True)
    vector = {b: bench_vector(b, args.episodes, args.seed) for b in args.batches}
    print("vector", vector, flush=True)
    train = {}
    for share, comm in METHODS:
        train[(share, comm)] = bench_train(
            share, comm, args.train_budget, args.eval_interval, args.seed
        )
        print("train", share, comm, train[(share, comm)], flush=True)
    load_after = os.getloadavg()

    busy = []
    if max(load_before[0], load_after[0]) > (os.cpu_count() or 1):
        busy = [
            "- the machine was shared with other work during the run (load above its core "
            "count): the rates are lower and noisier than on an idle machine"
        ]
    label = {("ps", False): "PS+IQL", ("ps", True): "PS+IQL+COMM"}
    label |= {("nps", False): "NPS+IQL", ("nps", True): "NPS+IQL+COMM"}
    lines = [
        "# SMAX 3s_vs_5z speed (backend `smax`)",
        "",
        *machine_lines(),
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)}",
        f"- command: `{command}`",
        "- JAX on the CPU (`JAX_PLATFORMS=cpu`), torch with 1 thread, W&B disabled",
        *busy,
        "",
        "## The environment alone (uniformly random valid actions)",
        "",
        "| form | env steps/s | compile (s) |",
        "|---|---|---|",
        f"| `SmaxEnv`, one episode, Python loop | {single['sps']:,.0f} | {single['compile_s']:.1f} |",
    ]
    for b, v in vector.items():
        lines.append(
            f"| `VectorSmaxEnv`, B={b} | {v['live_sps']:,.0f} live ({v['slot_sps']:,.0f} "
            f"incl. frozen slots) | {v['compile_s']:.1f} |"
        )
    lines += [
        "",
        f"Importing jax/jaxmarl and building the env took {single['import_build_s']:.1f} s. "
        '"live" counts steps of unfinished episodes; a batch runs until its longest episode '
        "ends, with finished episodes frozen.",
        "",
        "Random policy (the vector runs above): "
        + "; ".join(
            f"B={b}: {v['episodes']} episodes, return {v['return_mean']:.3f} (max "
            f"{v['return_max']:.3f}), win rate {v['win_rate']:.2f}, length {v['length_mean']:.1f}"
            for b, v in vector.items()
        ),
        "",
        f"## Training: `ficomm train` on SMAX, H 64, budget {args.train_budget:,} env steps",
        "",
        f"Evaluation (20 greedy episodes, vectorised) at step 0 and every "
        f'{args.eval_interval:,} steps is included. "whole command" also counts start-up '
        "(building the env and the networks, and compiling the evaluation kernel unless its "
        'batch size, 20, was measured above: JAX compiles once per process); "training loop" is the '
        "learner's own wall_time counter; the logged rate is metrics.csv's "
        "env_steps_per_sec (between the two evaluations).",
        "",
        "| method | env steps | wall (s) | env steps/s, whole command | env steps/s, training "
        "loop | logged env_steps_per_sec |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in train.items():
        logged = ", ".join(f"{x:,.0f}" for x in r["logged_sps"]) or "-"
        lines.append(
            f"| {label[key]} | {r['steps']:,} | {r['wall_s']:.1f} | {r['sps']:,.0f} | "
            f"{r['loop_sps']:,.0f} | {logged} |"
        )
    lines += [
        "",
        "Early in training (epsilon near 1) episodes are short random fights, and one gradient "
        "step follows each episode, so these rates are not those of a 3M-step run.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
