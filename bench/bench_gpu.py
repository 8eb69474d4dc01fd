"""Packs on a GPU: env steps per second of `ficomm train device=cuda` for packs of 1, 5, 20
and 60 PredatorPrey runs, the gradient step's time against the device's matmul rate, and
(with --paper-grid) the measured wall time of the PredatorPrey half of the paper grid.

What runs on the device: the networks, acting and gradient steps (the torch layers; the
compiled kernel is CPU-only). PredatorPrey steps on the CPU. A pack's runs are stacked on one
owner axis (`pack_learning=stacked`, the default on cuda): one acting forward and one gradient step per pack, so the
kernel launches are shared by its runs; one pack is also measured learning per run
(`pack_learning=per_run`, each run launching its own kernels), as the reference in the same
run, and the stacked gradient step is timed per run against a run's own step.

Without CUDA it stops with a message saying so (CI never has a GPU); `--device cpu` runs the
same measurements on the CPU, to check the script itself.

    python bench/bench_gpu.py                         # packs 1,5,20,60; writes bench/results/gpu.md
    python bench/bench_gpu.py --paper-grid            # also the PredatorPrey half of `paper`
    python bench/bench_gpu.py --device cpu --packs 1,2 --steps 2000 --out /tmp/gpu.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_pack import segment
from machine import machine

COMMAND = "python bench/bench_gpu.py"
METHOD = ["env=predator_prey", "share=nps", "comm=true", "hidden=64"]


def device_or_exit(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        cuda = torch.version.cuda or "none"
        raise SystemExit(
            f"bench_gpu: no CUDA device is available to torch {torch.__version__} (CUDA build: "
            f"{cuda}); run it on a machine with a GPU and a CUDA build of torch, or pass "
            "--device cpu to check the script on the CPU"
        )
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return machine()["cpu"]


def pack_rate(tmp: Path, device: str, runs: int, steps: int, learning: str = "stacked") -> dict:
    """Env steps per wall second of one pack of `runs` seeds over its steps S..2S, by the
    runs' own clocks (`bench_pack.segment`: start-up, CUDA context and the first S steps left
    out; the pack's runs share one clock, so its rate is all runs' steps over the mean
    segment)."""
    seeds = "[" + ", ".join(map(str, range(runs))) + "]"
    out = tmp / f"{device}_r{runs}_{learning}"
    args = [sys.executable, "-m", "ficomm.train", f"out={out}/s{{seed}}", *METHOD]
    args += [f"seed={seeds}", f"budget={2 * steps}", f"eval_interval={steps}"]
    args += ["eval_episodes=1", f"device={device}", "threads=1", "wandb_mode=disabled"]
    args += [f"pack_learning={learning}"]
    t = time.perf_counter()
    res = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"pack of {runs} on {device} failed:\n{res.stderr[-2000:]}")
    segments = [segment(out / f"s{s}", steps) for s in range(runs)]
    rate = sum(n for _, n in segments) / (sum(w for w, _ in segments) / runs)
    mode = "per run" if learning == "per_run" or runs == 1 else "stacked"
    return {"runs": runs, "learning": mode, "steps_per_s": rate, "per_run": rate / runs,
            "wall": wall}  # fmt: skip


def matmul_tflops(device: torch.device, n: int = 4096, reps: int = 20) -> float:
    """The device's float32 matmul rate (TF32 off, as ficomm trains)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def grad_step(device: torch.device, B: int = 32, T: int = 100, reps: int = 20, runs: int = 1):
    """One NPS+IQL+COMM gradient step at the paper's batch (32 episodes x 100 steps, 4 agents,
    H 64) with the torch layers on `device`, against its FLOP count at the matmul rate; with
    runs > 1, the stacked step of that many runs (`StackedLearner`), per run."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_train import paper_batch, step_flops

    from ficomm.learner import Learner, StackedLearner
    from ficomm.methods import layout_for
    from ficomm.nets import AgentNets

    learners = []
    for seed in range(runs):
        torch.manual_seed(seed)
        nets = AgentNets(layout_for("nps", True), 4, 28, 5, 64, kernel="torch").to(device)
        learners.append(Learner(nets, lr=5e-4))
    batch = paper_batch(B, T)
    if runs == 1:
        step = lambda: learners[0].train_step(batch)  # noqa: E731
    else:
        stack = StackedLearner(learners)
        step = lambda: stack.train_step([batch] * runs)  # noqa: E731
    for _ in range(3):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        step()
    sync(device)
    ms = (time.perf_counter() - t) / reps * 1e3
    return {"runs": runs, "ms": ms, "ms_per_run": ms / runs, "gflop": step_flops(nets, B, T) / 1e9}


def paper_grid(device: str) -> tuple[float, str]:
    """Wall seconds of the PredatorPrey half of `paper` (60 runs, 1M env steps) through the
    pipeline on this device, into a scratch copy of the workflow."""
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        for part in ("Snakefile", "workflow", "config"):
            src = repo / part
            cmd = ["cp", "-r", str(src), tmp]
            subprocess.run(cmd, check=True)
        overlay = Path(tmp) / "pp_half.yaml"
        overlay.write_text(
            "presets:\n  paper:\n    grid:\n      env: [predator_prey]\n"
            f"device: {device}\nwandb_mode: disabled\n"
        )
        command = (
            f"snakemake --cores {os.cpu_count()} paper_figures --config preset=paper "
            "--configfile pp_half.yaml"
        )
        t = time.perf_counter()
        res = subprocess.run(command.split(), cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if res.returncode != 0:
            raise SystemExit(f"paper grid failed:\n{res.stdout[-3000:]}")
    return wall, command


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--packs", default="1,5,20,60", help="runs per pack")
    p.add_argument(
        "--steps", type=int, default=4000, help="S: packs run 2S env steps, timed over S..2S"
    )
    p.add_argument("--per-run", type=int, default=20, help="also this pack learning per run")
    p.add_argument("--paper-grid", action="store_true", help="also time the PP half of paper")
    p.add_argument("--out", default="bench/results/gpu.md")
    args = p.parse_args()
    device = device_or_exit(args.device)
    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        packs = [int(r) for r in args.packs.split(",")]
        for runs in packs:
            rows.append(pack_rate(Path(tmp), args.device, runs, args.steps))
            print(rows[-1], flush=True)
        if args.per_run > 1:
            rows.append(pack_rate(Path(tmp), args.device, args.per_run, args.steps, "per_run"))
            print(rows[-1], flush=True)
    peak = matmul_tflops(device)
    step = grad_step(device)
    stacked = grad_step(device, runs=max(packs)) if max(packs) > 1 else None
    grid = paper_grid(args.device) if args.paper_grid else None
    m = machine()
    floor_ms = step["gflop"] / peak  # GFLOP / (TFLOP/s) = ms
    lines = [
        "# Packs on a GPU (`bench/bench_gpu.py`)",
        "",
        __doc__.split("\n\n", 1)[1].split("\n\nWithout CUDA")[0].strip(),
        "",
        f"Command: `{COMMAND} --device {args.device} --packs {args.packs} --steps {args.steps}"
        f"{' --paper-grid' if args.paper_grid else ''}`",
        "",
        f"- device: {device_name(device)}; host: `{m['uname']}`, {m['cores']} cores, {m['cpu']}",
        f"- torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; load average before: "
        f"{' '.join(f'{x:.2f}' for x in load_before)}",
        "",
        f"NPS+IQL+COMM, H 64, PredatorPrey, env steps per wall second over steps "
        f"{args.steps}..{2 * args.steps} of each run:",
        "",
        "| runs per pack | learning | env steps/s (all runs) | per run | wall of the process, s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['runs']} | {r['learning']} | {r['steps_per_s']:.0f} | {r['per_run']:.0f} | "
            f"{r['wall']:.1f} |"
        )
    lines += [
        "",
        f"Gradient step (paper batch, torch layers): {step['ms']:.2f} ms for "
        f"{step['gflop']:.2f} GFLOP; at the device's float32 matmul rate ({peak:.2f} TFLOP/s) "
        f"that is {floor_ms:.3f} ms: the step takes {step['ms'] / floor_ms:.0f}x its compute "
        "floor.",
    ]
    if stacked is not None:
        lines += ["", f"Stacked gradient step of {stacked['runs']} runs: {stacked['ms']:.2f} ms, "
                  f"{stacked['ms_per_run']:.3f} ms per run ({step['ms'] / stacked['ms_per_run']:.1f}x "
                  "a run's own step)."]  # fmt: skip
    biggest = max((r for r in rows if r["learning"] != "per run" or r["runs"] == 1),
                  key=lambda r: r["runs"])  # fmt: skip
    minutes = 60 * 1_000_000 / biggest["steps_per_s"] / 60  # 60 runs' steps at its rate
    lines += [
        "",
        f"Extrapolated, not measured: the PredatorPrey half of `paper` (60 runs x 1M env steps) "
        f"at the {biggest['runs']}-run pack's rate, one pack after another: "
        f"{minutes:.0f} min (the target: under 30).",
    ]
    if grid is not None:
        lines += ["", f"PredatorPrey half of `paper` (60 runs x 1M): {grid[0] / 60:.1f} min, "
                  f"`{grid[1]}`."]  # fmt: skip
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
