"""Packs on one CPU core: R runs of one configuration in one `ficomm train` process (`seed=[0,
..., R-1]`) against the same R runs trained one process each, per env step, and the pack's
peak memory.

What a pack shares on a CPU: the process (imports, JIT compilation), and the simulator's call:
one vectorised step for the R episodes (SMAX: one vmapped, jitted call instead of R, each with
a fixed dispatch cost). The pack is measured learning per run (`pack_learning=per_run`, the
CPU default) and stacked (`pack_learning=stacked`: the runs' networks on one owner axis, one
gradient step for the pack, the GPU default); on the CPU each run acts with the compiled
kernel either way.

Cost = CPU seconds (user + system, from wait4, all threads) per 1k env steps, summed over the
runs, measured as the difference of two budgets S and 2S of the same runs, so that imports,
start-up, compilation and the first S steps (a replay buffer not yet holding a batch) cancel:
what is left is the steady state of a long run. CPU time, not wall time, so that other load on
the machine changes the numbers little; the load is stated beside them anyway. The whole-run
figure (budget 2S, start-up included) is what short runs cost.

In-run = the same steady state by the runs' own clocks (wall seconds of training from each
run's evaluation at S to its end, from its checkpoint): one process, so the noise of two
separate totals does not enter; a pack's runs share one clock, so a pack's figure is its mean
segment over the env steps of all its runs. Wall time: read it on an idle machine.

Memory = peak resident set (ru_maxrss) of the process at budgets S and 2S, for a run alone and
for a pack of R: per further run of the pack, (pack - alone) / (R - 1). If a pack adds only
its runs' replay buffers (and their small networks), that figure grows from S to 2S as one
run's buffer does (alone at 2S - alone at S).

    python bench/bench_pack.py                  # R = 5, writes bench/results/pack.md
    python bench/bench_pack.py --runs 3 --envs predator_prey --out /tmp/pack.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import machine

# env entry -> (backend, S: env steps of the shorter budget, extra keys)
ENVS = {
    "predator_prey": ("native", 4000, []),
    "3s_vs_5z": ("smax", 2000, []),
}
COMMAND = "python bench/bench_pack.py"
METHOD = ["share=nps", "comm=true", "hidden=64"]  # the paper's method, fully independent
LEARNING = ("stacked", "per_run")  # how the pack learns (`pack_learning`)


def _final_state(run_dir: Path) -> dict:
    import torch

    return torch.load(run_dir / "checkpoint" / "state.pt", map_location="cpu", weights_only=False)


def final_env_steps(run_dir: Path) -> int:
    """Env steps a finished run took (its checkpoint's counter: the budget, overshot by the
    last episode)."""
    return int(_final_state(run_dir)["counters"]["env_steps"])


def segment(run_dir: Path, S: int) -> tuple[float, int]:
    """(training wall seconds, env steps) of a finished run from its evaluation at or after
    S to its end, by the run's own clock (its checkpoint's counters and history)."""
    state = _final_state(run_dir)
    row = next(r for r in state["history"] if r["env_steps"] >= S)
    c = state["counters"]
    return c["wall_time"] - row["wall_time"], int(c["env_steps"]) - int(row["env_steps"])


def train(
    out: str, entry: str, backend: str, seeds: list[int], budget: int, S: int, extra: list
) -> tuple[float, float, int, list[tuple[float, int]]]:
    """(CPU seconds, peak RSS in MB, total env steps of its runs, each run's `segment`) of
    one `ficomm train`."""
    seed = str(seeds[0]) if len(seeds) == 1 else "[" + ", ".join(map(str, seeds)) + "]"
    args = [sys.executable, "-m", "ficomm.train", f"out={out}", f"env={entry}"]
    args += [f"backend={backend}", *METHOD, f"seed={seed}", f"budget={budget}"]
    args += [f"eval_interval={S}", "eval_episodes=1", "threads=1"]  # the same evaluations
    args += ["wandb_mode=disabled", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{entry} seeds {seeds}: ficomm train failed:\n{err[-2000:]}")
    dirs = [Path(out.replace("{seed}", str(s))) for s in seeds]
    steps = sum(final_env_steps(d) for d in dirs)
    segments = [segment(d, S) for d in dirs] if budget > S else []
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, steps, segments


def measure(tmp: Path, entry: str, runs: int) -> dict:
    backend, S, extra = ENVS[entry]
    seeds = list(range(runs))
    res: dict = {"entry": entry, "backend": backend, "S": S}
    for budget in (S, 2 * S):
        packs = {
            learning: train(
                f"{tmp}/{entry}_pack_{learning}{budget}/s{{seed}}",
                entry,
                backend,
                seeds,
                budget,
                S,
                [*extra, f"pack_learning={learning}"],
            )
            for learning in LEARNING
        }
        alone = [
            train(f"{tmp}/{entry}_alone{budget}_s{s}", entry, backend, [s], budget, S, extra)
            for s in seeds
        ]
        res[budget] = {
            "alone_cpu": sum(a[0] for a in alone),
            "alone_rss": alone[0][1],  # seed 0 alone
            "alone_steps": sum(a[2] for a in alone),
            "alone_segments": [seg for a in alone for seg in a[3]],
        }
        for learning, pack in packs.items():
            res[budget][learning] = {
                "cpu": pack[0],
                "rss": pack[1],
                "steps": pack[2],
                "segments": pack[3],
            }
        print(entry, budget, res[budget], flush=True)
    a, b = res[S], res[2 * S]
    res["alone_ms"] = (
        1e3 * (b["alone_cpu"] - a["alone_cpu"]) / (b["alone_steps"] - a["alone_steps"])
    )
    res["alone_whole_ms"] = 1e3 * b["alone_cpu"] / b["alone_steps"]
    seg = b["alone_segments"]
    res["alone_inrun_ms"] = 1e3 * sum(w for w, _ in seg) / sum(n for _, n in seg)
    for learning in LEARNING:
        pa, pb = a[learning], b[learning]
        seg = pb["segments"]
        res[learning] = {
            "ms": 1e3 * (pb["cpu"] - pa["cpu"]) / (pb["steps"] - pa["steps"]),
            "whole_ms": 1e3 * pb["cpu"] / pb["steps"],
            "inrun_ms": 1e3 * (sum(w for w, _ in seg) / len(seg)) / sum(n for _, n in seg),
        }
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="R: runs per pack")
    p.add_argument("--envs", default=",".join(ENVS))
    p.add_argument("--out", default="bench/results/pack.md")
    args = p.parse_args()
    R = args.runs
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(Path(tmp), entry, R) for entry in args.envs.split(",")]
    load_after = os.getloadavg()
    m = machine()
    lines = [
        "# Packs on one CPU core (`bench/bench_pack.py`)",
        "",
        __doc__.split("\n\n", 1)[1].split("\n    python")[0].strip(),
        "",
        f"Command (repository root, venv active): `{COMMAND} --runs {R} --envs {args.envs}`.",
        "",
        f"- machine: `{m['uname']}`, {m['cores']} cores, {m['cpu']}, Python {m['python']}",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; load average (1/5/15 min) before: "
        f"{' '.join(f'{x:.2f}' for x in load_before)}, after: "
        f"{' '.join(f'{x:.2f}' for x in load_after)}",
        f"- method: NPS+IQL+COMM, H 64, batch 32, one thread; pack of R = {R} seeds (0-{R - 1}) "
        f"against the same {R} seeds one process each",
        "",
        "ms per env step, summed over the runs: CPU ms in the steady state (budgets S..2S) "
        "and over the whole run (budget 2S with start-up); wall ms in the steady state by the "
        "runs' own clocks (in-run); speed-up = separate / pack.",
        "",
        "| env (backend) | S | pack learning | separate, steady | pack, steady | speed-up, "
        "steady | separate, in-run | pack, in-run | speed-up, in-run | separate, whole run | "
        "pack, whole run | speed-up, whole run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for learning in LEARNING:
            p = r[learning]
            lines.append(
                f"| {r['entry']} ({r['backend']}) | {r['S']} | {learning} | {r['alone_ms']:.3f} | "
                f"{p['ms']:.3f} | {r['alone_ms'] / p['ms']:.2f}x | {r['alone_inrun_ms']:.3f} | "
                f"{p['inrun_ms']:.3f} | {r['alone_inrun_ms'] / p['inrun_ms']:.2f}x | "
                f"{r['alone_whole_ms']:.3f} | "
                f"{p['whole_ms']:.3f} | {r['alone_whole_ms'] / p['whole_ms']:.2f}x |"
            )
    lines += [
        "",
        f"Peak resident memory, MB (a run alone: seed 0; per further run = (pack - alone) / "
        f"{R - 1}; one run's buffer growth = alone at 2S - alone at S).",
        "",
        "| env | pack learning | alone, S | alone, 2S | pack, S | pack, 2S | per further run, S "
        "| per further run, 2S | one run's growth S -> 2S |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, b = r[r["S"]], r[2 * r["S"]]
        for learning in LEARNING:
            pa, pb = a[learning]["rss"], b[learning]["rss"]
            lines.append(
                f"| {r['entry']} | {learning} | {a['alone_rss']:.0f} | {b['alone_rss']:.0f} | "
                f"{pa:.0f} | {pb:.0f} | {(pa - a['alone_rss']) / (R - 1):.0f} | "
                f"{(pb - b['alone_rss']) / (R - 1):.0f} | {b['alone_rss'] - a['alone_rss']:.0f} |"
            )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
