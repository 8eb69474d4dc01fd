"""Training cost per env step against team size on PredatorPrey (4, 8, 16 predators): ficomm's
batched owner axis against the same agents trained by one process per owner.

Configurations: the registry entries `predator_prey` (7x7, 4 predators), `predator_prey_8`
(10x10, 8) and `predator_prey_16` (14x14, 16), NPS and PS, IQL (COMM with --comm), H 64, the
paper's batch (32 episodes), one thread, through `ficomm train` (collection, acting, learning,
evaluation of 1 episode at each --steps).

Reference (one owner per process): the fully independent deployment runs one learner process
per agent, each acting for its own agent and training its own network on its own data. Each
such process does the work of `ficomm train env=<same entry> env_args.n_agents=1 share=nps`:
the same grid and prey, one predator, an identical network (NPS, H 64, observation 28), one
gradient step per episode on 32 of its episodes. n such processes cost n times one of them
(each also steps its own copy of the env, so the reference counts env stepping n times; the
env's share is small, see the table). Ratio = batched cost / (n x one-owner cost): below 1 the
owner axis is cheaper than separate processes.

Cost = CPU seconds (user + system, from wait4) per 1k env steps, measured as the difference of
two runs of the same configuration with budgets S and 2S, so that imports, start-up and the
first S steps (a replay buffer not yet holding 32 episodes) cancel: what is left is steps S..2S
at the full batch (CPU ms per env step = CPU s per 1k env steps). The one-owner reference is
cheap per step, so it runs --ref-factor times as many steps, lest the variation of the start-up
(a few tenths of a CPU second) swamp its difference. CPU time, not wall time, so that other load on the machine (whose jobs take
the cores from this niced bench) changes the numbers little; stated beside them anyway.

    python bench/bench_scale.py                       # S = 4000, writes bench/results/scale.md
    python bench/bench_scale.py --steps 2000 --sizes 4,16 --out /tmp/scale.md
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

from machine import machine

ENTRIES = {4: "predator_prey", 8: "predator_prey_8", 16: "predator_prey_16"}
COMMAND = "python bench/bench_scale.py"


def train_cpu(out: Path, entry: str, share: str, comm: bool, budget: int, extra: list[str]):
    """(CPU seconds of one `ficomm train` child, its grad steps, its env steps)."""
    args = [sys.executable, "-m", "ficomm.train", f"out={out}", f"env={entry}"]
    args += [f"share={share}", f"comm={str(comm).lower()}", "hidden=64", "seed=0"]
    args += [f"budget={budget}", f"eval_interval={budget // 2}", "eval_episodes=1"]
    args += ["threads=1", "wandb_mode=disabled", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{entry} {share}: ficomm train failed:\n{err}")
    import pandas as pd  # the child wrote it; read its last row

    last = pd.read_csv(out / "metrics.csv").iloc[-1]
    return usage.ru_utime + usage.ru_stime, int(last["grad_steps"]), int(last["env_steps"])


def cost(tmp: Path, tag: str, entry: str, share: str, comm: bool, steps: int, extra=()) -> dict:
    """CPU ms per env step over steps S..2S (two runs, S and 2S)."""
    c1, g1, e1 = train_cpu(tmp / f"{tag}_a", entry, share, comm, steps, list(extra))
    c2, g2, e2 = train_cpu(tmp / f"{tag}_b", entry, share, comm, 2 * steps, list(extra))
    span = max(e2 - e1, 1)
    return {"ms_per_step": 1e3 * (c2 - c1) / span, "grad_per_1k": 1e3 * (g2 - g1) / span}


def env_ms_per_step(entry: str, n_steps: int = 3000) -> float:
    """CPU ms of one env step under random actions (the env's own share of the cost)."""
    import numpy as np

    from ficomm.envs import make_env

    env = make_env(entry, "native", seed=0)
    rng = np.random.default_rng(0)
    n = env.info.n_agents
    env.reset()
    t = time.process_time()
    for _ in range(n_steps):
        s = env.step(rng.integers(0, 5, n))
        if s.terminated or s.truncated:
            env.reset()
    return 1e3 * (time.process_time() - t) / n_steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4000, help="S: runs of S and 2S env steps")
    p.add_argument("--sizes", default="4,8,16")
    p.add_argument("--ref-factor", type=int, default=4, help="the reference's S, in units of S")
    p.add_argument("--comm", action="store_true", help="NPS+IQL+COMM / PS+IQL+COMM instead")
    p.add_argument("--out", default="bench/results/scale.md")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.UTC)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in sizes:
            entry = ENTRIES[n]
            ref_steps = args.ref_factor * args.steps
            one = cost(tmp, f"ref{n}", entry, "nps", False, ref_steps, ["env_args.n_agents=1"])
            row = {"n": n, "entry": entry, "one_owner": one, "env_ms": env_ms_per_step(entry)}
            for share in ("nps", "ps"):
                row[share] = cost(tmp, f"{share}{n}", entry, share, args.comm, args.steps)
            rows.append(row)
            print(row, flush=True)
    load_after = os.getloadavg()
    m = machine()
    comm = "+COMM" if args.comm else ""
    base = {s: rows[0][s]["ms_per_step"] / rows[0]["n"] for s in ("nps", "ps")}
    lines = [
        "# Training cost against team size (`bench/bench_scale.py`)",
        "",
        __doc__.split("\n\n", 1)[1].split("\n    python")[0].strip(),
        "",
        f"Command (repository root, venv active): `{COMMAND} --steps {args.steps} --sizes "
        f"{args.sizes} --ref-factor {args.ref_factor}{' --comm' if args.comm else ''}`, run at "
        "`nice -n 19`.",
        "",
        f"- machine: `{m['uname']}`, {m['cores']} cores, {m['cpu']}, Python {m['python']}",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; load average (1/5/15 min) before: "
        f"{' '.join(f'{x:.2f}' for x in load_before)}, after: "
        f"{' '.join(f'{x:.2f}' for x in load_after)}",
        f"- methods: NPS+IQL{comm} and PS+IQL{comm}, H 64; the one-owner reference is always "
        "NPS+IQL with one predator",
        "",
        f"CPU ms per env step (S = {args.steps}; reference S = {args.ref_factor * args.steps}); "
        "per agent-step = divided by the team size; grad steps per 1k env steps in brackets.",
        "",
        "| team | entry | env step alone | one owner (1 process) | n x one owner | NPS batched | "
        "NPS per agent-step | NPS / (n x one owner) | NPS per agent vs team 4 | PS batched | "
        "PS per agent-step | PS / (n x one owner) | PS per agent vs team 4 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        n, one = r["n"], r["one_owner"]["ms_per_step"]
        cells = [
            f"{n}",
            f"`{r['entry']}`",
            f"{r['env_ms']:.3f}",
            f"{one:.3f} ({r['one_owner']['grad_per_1k']:.1f})",
            f"{n * one:.3f}",
        ]
        for s in ("nps", "ps"):
            c = r[s]["ms_per_step"]
            cells += [
                f"{c:.3f} ({r[s]['grad_per_1k']:.1f})",
                f"{c / n:.3f}",
                f"{c / (n * one):.2f}",
                f"{(c / n) / base[s]:.2f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
