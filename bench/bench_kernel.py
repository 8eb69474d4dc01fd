"""The compiled kernel (ficomm.kernels) against the torch layers, piece by piece, one thread.

At the paper's sizes (PredatorPrey NPS+IQL+COMM: 4 agents, H 64, minibatch 32 episodes x
100 steps), fused and torch interleaved, medians and minima over --reps:
  1. the Q-net unroll: forward (no grad, as the target net), forward saving for backward,
     forward + backward (gradient into the message columns, as in training);
  2. the message net: forward, forward + backward;
  3. acting: 100 steps of all agents (Policy.q_values, one episode) and collecting training
     episodes for 1000 env steps (one step of the torch layers for kernel=torch);
  4. system time of 40 gradient steps in a fresh process with and without
     ficomm.train.keep_freed_memory.

    python bench/bench_kernel.py                          # writes bench/results/kernel.md
    FICOMM_KERNEL_CXXFLAGS=-mno-avx512f FICOMM_KERNEL_CACHE=/tmp/k256 \\
        python bench/bench_kernel.py --out bench/results/kernel_avx2.md   # an AVX2-only build
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine

from ficomm import kernels
from ficomm.buffer import Batch, Episode
from ficomm.envs import make_env
from ficomm.learner import Learner
from ficomm.methods import layout_for
from ficomm.nets import AgentNets, MessageNet, QNet
from ficomm.rollout import EpsilonSchedule, Policy, collect_episode

G, T, B, F, H, A, OBS, D = 4, 100, 32, 73, 64, 5, 28, 10


def interleaved(fns: dict, reps: int) -> dict[str, tuple[float, float]]:
    """name -> (median ms, min ms), the contenders alternating."""
    for f in fns.values():
        f()
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - t) * 1e3)
    return {k: (float(np.median(v)), min(v)) for k, v in times.items()}


def qnet_rows(reps: int) -> list[tuple[str, dict]]:
    torch.manual_seed(0)
    q = QNet(G, F, H, A)
    x = torch.randn(G, T, B, F)
    h = torch.zeros(G, B, H)
    part = x[..., -D:].clone().requires_grad_()

    def run(kernel, mode):
        def f():
            q.kernel = kernel
            if mode == "fwd":
                with torch.no_grad():
                    q.unroll(x, h)
            elif mode == "fwd_save":
                q.unroll(x, h, part)
            else:
                q.unroll(x, h, part)[0].sum().backward()

        return f

    return [
        (f"Q-net unroll, {mode}", interleaved({k: run(k, mode) for k in ("fused", "torch")}, reps))
        for mode in ("fwd", "fwd_save", "fwd_bwd")
    ]


def msg_rows(reps: int) -> list[tuple[str, dict]]:
    torch.manual_seed(0)
    m = MessageNet(G, OBS, 64, D)
    obs = torch.rand(G, T * B, OBS)

    def run(kernel, backward):
        def f():
            m.kernel = kernel
            if backward:
                m(obs).sum().backward()
            else:
                with torch.no_grad():
                    m(obs)

        return f

    return [
        (f"message net, {name}", interleaved({k: run(k, bwd) for k in ("fused", "torch")}, reps))
        for name, bwd in (("fwd", False), ("fwd_bwd", True))
    ]


def acting_rows(reps: int) -> list[tuple[str, dict]]:
    env = make_env("predator_prey", "native", seed=0)
    policies = {}
    for kernel in ("fused", "torch"):
        torch.manual_seed(0)
        policies[kernel] = Policy(AgentNets(layout_for("nps", True), 4, OBS, A, H, kernel=kernel))
    obs = env.reset(seed=0).obs[None]

    def step(p):
        def f():
            for _ in range(100):
                p.q_values(obs)

        p.start(1)
        return f

    def collect(p):
        ep, rng = Episode.empty(env.info), np.random.default_rng(0)
        eps = EpsilonSchedule(1.0, 0.05, 50_000)

        def f():  # episodes until 1000 env steps: the same episodes for both contenders
            steps = 0
            while steps < 1000:
                collect_episode(env, p, ep, eps, rng, steps, True)
                steps += ep.length

        return f

    rows = [
        ("acting step, 100 calls", interleaved({k: step(p) for k, p in policies.items()}, reps)),
        (
            "collect episodes, 1000 env steps",
            interleaved({k: collect(p) for k, p in policies.items()}, reps),
        ),
    ]
    return rows


def alloc_child(keep: bool, steps: int = 40) -> None:
    """Runs in a subprocess: `steps` gradient steps, prints system and wall seconds."""
    from ficomm.train import keep_freed_memory

    torch.set_num_threads(1)
    if keep:
        keep_freed_memory()
    torch.manual_seed(0)
    learner = Learner(AgentNets(layout_for("nps", True), 4, OBS, A, H), lr=5e-4)
    rng = np.random.default_rng(0)
    batch = Batch(
        obs=(rng.integers(0, 7, (B, T + 1, 4, OBS)) / 6).astype(np.float32),
        avail=np.ones((B, T + 1, 4, A), bool),
        actions=rng.integers(0, A, (B, T, 4)),
        reward=rng.normal(size=(B, T)).astype(np.float32),
        terminal=np.zeros((B, T), bool),
        mask=np.ones((B, T), np.float32),
    )
    learner.train_step(batch)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        learner.train_step(batch)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(r1.ru_stime - r0.ru_stime, r1.ru_utime - r0.ru_utime, time.perf_counter() - t0)


def alloc_rows() -> list[str]:
    out = []
    for keep in (False, True, False, True):
        res = subprocess.run(
            [sys.executable, __file__, "--alloc-child", "on" if keep else "off"],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            check=True,
        )
        sys_s, user_s, wall = map(float, res.stdout.split())
        label = "with keep_freed_memory" if keep else "glibc default"
        out.append(f"| {label} | {sys_s:.2f} | {user_s:.2f} | {wall:.2f} |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "kernel.md")
    p.add_argument("--alloc-child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.alloc_child:
        return alloc_child(args.alloc_child == "on")
    torch.set_num_threads(1)
    if kernels.load() is None:
        raise SystemExit(f"the compiled kernel does not build here: {kernels.unavailable_reason()}")
    rows = qnet_rows(args.reps) + msg_rows(args.reps) + acting_rows(args.reps)
    m = machine()
    lines = [
        "# The compiled kernel against the torch layers (`bench/bench_kernel.py`)",
        "",
        f"- machine: `{m['uname']}`",
        f"- CPU: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {torch.__version__}",
        f"- kernel: {kernels.vector_bytes() * 8}-bit SIMD build, extra flags "
        f"`{' '.join(kernels.extra_flags()) or '(none)'}`; one thread",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- command: `{' '.join(['python', 'bench/bench_kernel.py', *sys.argv[1:]])}`"
        + (
            f" with FICOMM_KERNEL_CXXFLAGS={os.environ['FICOMM_KERNEL_CXXFLAGS']!r}"
            if kernels.extra_flags()
            else ""
        ),
        "",
        f"Sizes: NPS+IQL+COMM on PredatorPrey, {G} agents, H {H}, minibatch {B} episodes x {T} "
        f"steps; fused and torch interleaved, {args.reps} repetitions, median (min) in ms.",
        "",
        "| what | fused ms | torch ms | torch / fused (medians) |",
        "|---|---|---|---|",
    ]
    for name, r in rows:
        (fm, fmin), (tm, tmin) = r["fused"], r["torch"]
        lines.append(f"| {name} | {fm:.2f} ({fmin:.2f}) | {tm:.2f} ({tmin:.2f}) | {tm / fm:.1f} |")
    if kernels.extra_flags():
        lines += [
            "",
            "Only the compiled kernel is built with the extra flags: torch (MKL) still uses the "
            "CPU's full SIMD width, so on a real CPU without it the torch column would be slower "
            "too.",
        ]
    lines += [
        "",
        "System time of 40 gradient steps (same sizes), each line a fresh process:",
        "",
        "| allocator | system s | user s | wall s |",
        "|---|---|---|---|",
        *alloc_rows(),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
