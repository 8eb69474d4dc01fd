"""Training speed and memory of `ficomm train` on PredatorPrey (spec schedule, H 64).

For each method: one `ficomm train` subprocess on one thread for the first --steps env steps
(evaluation included: at 0, 10k, 20k), timed by the run itself (wall_time in its final
checkpoint), with the child's peak resident memory (ru_maxrss). Then the gradient step
alone at the paper's batch (32 episodes x 100 steps, 4 agents, H 64) against this core's
matmul peak and the step's FLOP count.

    python bench/bench_train.py                 # all four methods, 30k steps
    python bench/bench_train.py --steps 10000 --methods nps:comm
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

METHODS = {
    "ps": ("ps", False),
    "ps:comm": ("ps", True),
    "nps": ("nps", False),
    "nps:comm": ("nps", True),
}
LABEL = {k: f"{s.upper()}+IQL" + ("+COMM" if c else "") for k, (s, c) in METHODS.items()}
AUTHORS_STEPS_PER_SEC = 210  # their NPS+IQL+COMM, H 64, one core, first 30k steps


def run_method(key: str, steps: int, out: Path) -> dict:
    share, comm = METHODS[key]
    args = [
        sys.executable,
        "-m",
        "ficomm.train",
        f"out={out}",
        "env=predator_prey",
        f"share={share}",
        f"comm={str(comm).lower()}",
        "hidden=64",
        f"budget={steps}",
        "threads=1",
        "wandb_mode=disabled",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    err = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{key}: ficomm train failed:\n{err}")
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=True)
    c = state["counters"]
    return {
        "method": LABEL[key],
        "env_steps": c["env_steps"],
        "episodes": c["episodes"],
        "train_wall_s": c["wall_time"],
        "process_wall_s": elapsed,
        "steps_per_sec": c["env_steps"] / c["wall_time"],
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_mb": usage.ru_maxrss / 1024,
    }


def buffer_sizes() -> list[tuple[str, int]]:
    """Bytes of a full 5000-episode buffer: PredatorPrey (uint8 codes) and SMAC-sized float32."""
    from ficomm.buffer import EpisodeBuffer
    from ficomm.envs.base import EnvInfo

    pp = EpisodeBuffer(5000, EnvInfo(4, 5, 28, 15, 100, False))
    smac = EpisodeBuffer(5000, EnvInfo(3, 11, 48, 68, 250, True))
    smac_raw = smac.obs.codes.size * 4  # continuous observations fall back to float32
    return [
        ("PredatorPrey (obs as uint8 codes)", pp.nbytes),
        ("3s_vs_5z sizes (obs float32)", smac.nbytes - smac.obs.nbytes + smac_raw),
    ]


def matmul_gflops(n: int = 2048, reps: int = 5) -> tuple[float, float]:
    """One-thread matmul rate, per wall second and per CPU second (robust to other load)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t, c = time.perf_counter(), time.process_time()
    for _ in range(reps):
        a @ b
    flops = 2 * n**3 * reps / 1e9
    return flops / (time.perf_counter() - t), flops / (time.process_time() - c)


def step_flops(nets, B: int, T: int) -> float:
    """Multiply-adds x 2 of one training iteration: online forward, backward (2x forward:
    input and weight gradients), target forward."""
    n = nets.n_agents
    rows = n * B * T
    H, A, F = nets.hidden, nets.n_actions, nets.in_features
    q = F * H + 2 * H * 3 * H + H * A
    m = 0
    if nets.msg is not None:
        m = sum(
            p.shape[1] * p.shape[2] for name, p in nets.msg.named_parameters() if "weight" in name
        )
    fwd = 2 * rows * (q + m)
    return fwd * 3 + fwd  # online fwd + bwd (~2x) + target fwd


def paper_batch(B: int = 32, T: int = 100):
    """A PredatorPrey-shaped training batch (B episodes x T steps, 4 agents, observation 28)."""
    from ficomm.buffer import Batch

    rng = np.random.default_rng(0)
    return Batch(
        obs=(rng.integers(0, 7, (B, T + 1, 4, 28)) / 6).astype(np.float32),
        avail=np.ones((B, T + 1, 4, 5), bool),
        actions=rng.integers(0, 5, (B, T, 4)),
        reward=rng.normal(size=(B, T)).astype(np.float32),
        terminal=np.zeros((B, T), bool),
        mask=np.ones((B, T), np.float32),
    )


def grad_step_ms(key: str, B: int = 32, T: int = 100, reps: int = 10) -> tuple[float, float]:
    from ficomm.learner import Learner
    from ficomm.methods import layout_for
    from ficomm.nets import AgentNets
    from ficomm.train import keep_freed_memory

    keep_freed_memory()  # as `ficomm train` does
    share, comm = METHODS[key]
    torch.manual_seed(0)
    nets = AgentNets(layout_for(share, comm), 4, 28, 5, 64)
    learner = Learner(nets, lr=5e-4)
    batch = paper_batch(B, T)
    for _ in range(2):
        learner.train_step(batch)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(reps):
        learner.train_step(batch)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return wall / reps * 1000, cpu / reps * 1000, step_flops(nets, B, T)


def kernel_line() -> str:
    from ficomm import kernels

    if kernels.load() is None:
        return f"- kernel: torch (compiled kernel unavailable: {kernels.unavailable_reason()})"
    return f"- kernel: fused (compiled, {kernels.vector_bytes() * 8}-bit SIMD)"


def machine() -> str:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (
        f"- machine: `{' '.join(platform.uname())}`\n- CPU: {cpu}, {os.cpu_count()} cores\n"
        f"- load average at start: {', '.join(f'{x:.2f}' for x in load)}\n"
        f"- torch {torch.__version__}, numpy {np.__version__}, python {platform.python_version()}\n"
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30_000)
    p.add_argument("--methods", default="ps,ps:comm,nps,nps:comm")
    p.add_argument("--step-only", action="store_true", help="only the gradient-step timing")
    args = p.parse_args()
    torch.set_num_threads(1)
    keys = args.methods.split(",")
    print(machine(), "\n" + kernel_line(), "\n", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in [] if args.step_only else keys:
            r = run_method(key, args.steps, Path(tmp) / key.replace(":", "_"))
            rows.append(r)
            print(r, flush=True)
    peak_wall, peak = matmul_gflops()
    print(
        f"\nmatmul 2048x2048 on one thread: {peak_wall:.1f} GFLOP per wall s, "
        f"{peak:.1f} GFLOP per CPU s\n"
    )
    print(
        "| method | env steps | episodes | train wall s | env steps/s (wall) | process CPU s "
        "| env steps per CPU s | x authors (210/s): wall, CPU | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        per_cpu = r["env_steps"] / r["cpu_s"]
        print(
            f"| {r['method']} | {r['env_steps']} | {r['episodes']} | {r['train_wall_s']:.1f} | "
            f"{r['steps_per_sec']:.0f} | {r['cpu_s']:.1f} | {per_cpu:.0f} | "
            f"{r['steps_per_sec'] / AUTHORS_STEPS_PER_SEC:.1f}, "
            f"{per_cpu / AUTHORS_STEPS_PER_SEC:.1f} | {r['maxrss_mb']:.0f} |"
        )
    print("\nreplay buffer at full capacity (5000 episodes), bytes held:")
    for label, nbytes in buffer_sizes():
        print(f"- {label}: {nbytes / 2**20:.1f} MiB")
    print(
        "\n| method | grad step wall ms (B 32, T 100) | grad step CPU ms | GFLOP per step "
        "| GFLOP per CPU s | floor at matmul peak ms | step / floor |"
    )
    print("|---|---|---|---|---|---|---|")
    for key in keys:
        ms, cpu_ms, flops = grad_step_ms(key)
        floor = flops / peak / 1e6
        print(
            f"| {LABEL[key]} | {ms:.1f} | {cpu_ms:.1f} | {flops / 1e9:.2f} | "
            f"{flops / cpu_ms / 1e6:.1f} | {floor:.1f} | {cpu_ms / floor:.1f} |"
        )
    by = {r["method"]: r for r in rows}
    if "PS+IQL+COMM" in by and "NPS+IQL+COMM" in by:
        ratio = by["NPS+IQL+COMM"]["train_wall_s"] / by["PS+IQL+COMM"]["train_wall_s"]
        print(f"\nNPS+IQL+COMM / PS+IQL+COMM wall time: {ratio:.2f}")


if __name__ == "__main__":
    main()
