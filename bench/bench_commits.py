"""Two commits of ficomm side by side on one machine: the same `ficomm train` run (PredatorPrey,
NPS+IQL+COMM, H 64, seed 0, one thread by default) at commit OLD and at commit NEW, both at
once, each pinned to its own core with `taskset`, repeated with the cores swapped; the
training columns of their metrics.csv must be identical, and the ratio NEW / OLD of their
times says whether a change made the training loop slower. Run it for every change to the
training loop (docs/development.md says when), and add its result to bench/results/commits.md.

Times: the whole command (wall), the run's own clock (metrics.csv wall_time at the last
evaluation both runs have) and the process's CPU time (user + system, from wait4). Both
commits run at the same moment, so a busy machine slows both alike as far as it can; on a
loaded machine read the ratios, not the seconds, and their spread over the repeats.

--instructions adds a load-independent measure: the instructions each commit executes
(valgrind --tool=callgrind, both commits at once, any load) for budgets S and 2S of the same
run with evaluations every S; 2S - S is the training loop without imports and start-up.
Valgrind has no AVX-512, so these runs build the compiled kernel without it
(FICOMM_KERNEL_CXXFLAGS=-mno-avx512f) for both commits alike; the counts are then those of
an AVX2 build, not of the timed runs.

A commit is checked out with `git worktree add` into a temporary folder (removed after) and
imported from there (PYTHONPATH=<worktree>/src: its own Python code and its own compiled
kernel, built from its nets.cpp before the timing starts), with this environment's packages.
`worktree` instead of a commit names the repository's working tree as it is (uncommitted
changes included): a change before it is committed.

    python bench/bench_commits.py 30ceef6 9492f33                 # 30k env steps, 2 repeats
    python bench/bench_commits.py HEAD worktree --instructions --set intervene_every=0
    python bench/bench_commits.py A B --steps 10000 --repeats 4 --out /tmp/x.md
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python bench/bench_commits.py"
METHODS = {"ps": ("ps", False), "ps:comm": ("ps", True), "nps": ("nps", False)}
METHODS["nps:comm"] = ("nps", True)
LABEL = {k: f"{s.upper()}+IQL" + ("+COMM" if c else "") for k, (s, c) in METHODS.items()}
# metrics.csv columns that must not change with a speed change (eval_* by prefix)
TRAINING_COLUMNS = ("env_steps", "episodes", "grad_steps", "train_loss", "epsilon")
NO_AVX512 = "-mno-avx512f"  # valgrind cannot run AVX-512 instructions


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


class Checkout:
    """A commit's sources in a temporary worktree, or the working tree itself ('worktree')."""

    def __init__(self, rev: str, tmp: Path):
        self.rev = rev
        if rev == "worktree":
            self.name, self.src, self.tree = "worktree", ROOT / "src", None
            self.described = f"working tree (on {git('rev-parse', '--short=7', 'HEAD')})"
            return
        sha = git("rev-parse", "--short=7", f"{rev}^{{commit}}")
        self.name, self.tree = sha, tmp / f"wt_{sha}"
        git("worktree", "add", "--detach", str(self.tree), sha)
        self.src = self.tree / "src"
        self.described = f"{sha} ({git('log', '-1', '--format=%s', sha)[:70]})"

    def env(self, cxxflags: str | None = None) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(self.src), "OMP_NUM_THREADS": "1"}
        env["MKL_NUM_THREADS"] = "1"
        if cxxflags is not None:
            env["FICOMM_KERNEL_CXXFLAGS"] = cxxflags
        return env

    def build_kernel(self, cxxflags: str | None = None) -> str:
        """Build (or find in the cache) this commit's compiled kernel; returns the .so used."""
        code = (
            "import ficomm, ficomm.kernels as k\n"
            f"assert ficomm.__file__.startswith({str(self.src)!r}), ficomm.__file__\n"
            "lib = k.load()\n"
            "print(lib._name if lib else 'none: ' + str(k.unavailable_reason()))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], env=self.env(cxxflags), capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SystemExit(f"{self.name}: cannot import ficomm:\n{proc.stderr[-2000:]}")
        return proc.stdout.strip().splitlines()[-1]

    def remove(self) -> None:
        if self.tree is not None:
            git("worktree", "remove", "--force", str(self.tree))


def train_args(out: Path, args: argparse.Namespace, budget: int, extra: list[str]) -> list[str]:
    share, comm = METHODS[args.method]
    return [
        sys.executable,
        "-m",
        "ficomm.train",
        f"out={out}",
        "env=predator_prey",
        f"share={share}",
        f"comm={str(comm).lower()}",
        f"hidden={args.hidden}",
        f"seed={args.seed}",
        f"budget={budget}",
        "threads=1",
        "wandb_mode=disabled",
        *extra,
        *args.set,
    ]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def compare(a: list[dict], b: list[dict]) -> tuple[bool, str]:
    """(identical?, what differs) over the training columns of two metrics.csv."""
    cols = [c for c in a[0] if c in TRAINING_COLUMNS or c.startswith("eval_")]
    only = sorted(c for c in {*a[0]} ^ {*b[0]} if c in TRAINING_COLUMNS or c.startswith("eval_"))
    diffs = [
        f"row {i} (env_steps {ra.get('env_steps')}) {c}: {ra.get(c)} vs {rb.get(c)}"
        for i, (ra, rb) in enumerate(zip(a, b, strict=False))
        for c in cols
        if ra.get(c) != rb.get(c)
    ]
    if len(a) != len(b):
        diffs.append(f"rows: {len(a)} vs {len(b)}")
    if only:
        diffs.append(f"columns in one only: {', '.join(only)}")
    return not diffs, "; ".join(diffs[:5])


def last_common_clock(a: list[dict], b: list[dict]) -> tuple[int, float, float]:
    """(env steps, wall_time of a, of b) at the last evaluation both runs wrote."""
    steps_b = {r["env_steps"]: r for r in b}
    common = [(r, steps_b[r["env_steps"]]) for r in a if r["env_steps"] in steps_b]
    ra, rb = common[-1]
    return int(ra["env_steps"]), float(ra["wall_time"]), float(rb["wall_time"])


def start(cmd: list[str], env: dict, core: int | None, log: Path, prefix=()) -> subprocess.Popen:
    pin = ["taskset", "-c", str(core)] if core is not None else []
    with open(log, "w") as f:
        return subprocess.Popen([*pin, *prefix, *cmd], env=env, stdout=f, stderr=subprocess.STDOUT)


def wait_all(procs: list[subprocess.Popen], t0: list[float], logs: list[Path]) -> list[dict]:
    """Reap the processes in the order they end: wall seconds from each one's start, CPU
    seconds (user + system) from wait4."""
    res: list[dict] = [{} for _ in procs]
    pids = {proc.pid: i for i, proc in enumerate(procs)}
    while pids:
        pid, status, usage = os.wait4(-1, 0)
        if pid not in pids:
            continue
        i = pids.pop(pid)
        res[i] = {"wall": time.perf_counter() - t0[i], "cpu": usage.ru_utime + usage.ru_stime}
        procs[i].returncode = os.waitstatus_to_exitcode(status)
        if procs[i].returncode != 0:
            raise SystemExit(f"{procs[i].args}: failed:\n{logs[i].read_text()[-3000:]}")
    return res


def side_by_side(checkouts, args, tmp: Path) -> list[dict]:
    """`repeats` rounds of both commits at once, commit i on core (i + round) % 2."""
    cores = len(os.sched_getaffinity(0))
    rounds = []
    for r in range(args.repeats):
        procs, t0, logs, outs = [], [], [], []
        for i, co in enumerate(checkouts):
            out = tmp / f"time_{co.name}_{r}"
            core = (i + r) % 2 if cores >= 2 else None
            logs.append(tmp / f"{out.name}.log")
            t0.append(time.perf_counter())
            procs.append(start(train_args(out, args, args.steps, []), co.env(), core, logs[-1]))
            outs.append((out, core))
        res = {}
        for co, (out, core), done in zip(checkouts, outs, wait_all(procs, t0, logs), strict=True):
            res[co.name] = {**done, "core": core, "metrics": read_metrics(out)}
        a, b = (res[co.name] for co in checkouts)
        steps, a["clock"], b["clock"] = last_common_clock(a["metrics"], b["metrics"])
        same, why = compare(a["metrics"], b["metrics"])
        rounds.append({"runs": res, "clock_steps": steps, "identical": same, "why": why})
        print(f"round {r}: {[(k, v['wall'], v['cpu'], v['clock']) for k, v in res.items()]}")
        print(f"  identical: {same} {why}", flush=True)
    first = [rd["runs"][checkouts[0].name]["metrics"] for rd in rounds]
    repeatable = all(compare(first[0], m)[0] for m in first[1:])
    for rd in rounds:
        rd["repeatable"] = repeatable
    return rounds


def callgrind_total(path: Path) -> int:
    """Instructions (Ir) of a callgrind output file."""
    text = path.read_text(errors="replace")
    m = re.search(r"^(?:totals|summary):\s*(\d+)", text, re.M)
    if m is None:
        raise SystemExit(f"{path}: no totals line")
    return int(m.group(1))


def instructions(checkouts, args, tmp: Path) -> dict:
    """Ir of each commit at budgets S and 2S (evaluations every S), all four runs at once in
    pairs (counts do not depend on load), and whether the metrics agree."""
    S = args.instr_steps
    res: dict = {co.name: {} for co in checkouts}
    for budget in (S, 2 * S):
        procs, t0, logs, outs = [], [], [], []
        for co in checkouts:
            out = tmp / f"instr_{co.name}_{budget}"
            cg = tmp / f"callgrind_{co.name}_{budget}.out"
            prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}"]
            cmd = train_args(out, args, budget, [f"eval_interval={S}"])
            logs.append(tmp / f"{out.name}.log")
            t0.append(time.perf_counter())
            procs.append(start(cmd, co.env(NO_AVX512), None, logs[-1], prefix))
            outs.append((out, cg))
        wait_all(procs, t0, logs)
        for co, (out, cg) in zip(checkouts, outs, strict=True):
            res[co.name][budget] = {"ir": callgrind_total(cg), "metrics": read_metrics(out)}
        print(f"instructions at {budget}: {[(k, v[budget]['ir']) for k, v in res.items()]}")
    a, b = (res[co.name] for co in checkouts)
    res["identical"], res["why"] = compare(a[2 * S]["metrics"], b[2 * S]["metrics"])
    return res


def load_line() -> str:
    """Load average and the processes using CPU now (name and share only)."""
    ps = subprocess.run(
        ["ps", "-eo", "pcpu=,comm=", "--sort=-pcpu"], capture_output=True, text=True
    ).stdout
    busy = [ln.split(None, 1) for ln in ps.splitlines() if ln.strip()]
    busy = [f"{name.strip()} {float(p):.0f}%" for p, name in busy if float(p) >= 10]
    avg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"load average (1/5/15 min) {avg}; processes at >= 10% CPU: {', '.join(busy) or 'none'}"


def ratio_range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.3f}x" if abs(hi - lo) < 5e-4 else f"{lo:.3f}-{hi:.3f}x"


def clock_ratio(rd: dict) -> str:
    a, b = (rd["runs"][k]["clock"] for k in rd["runs"])
    return f"{b / a:.3f}x" if a > 0 else "-"


def report(checkouts, args, rounds, instr, kernels, loads, started) -> list[str]:
    old, new = checkouts
    m = machine()
    cmd = f"{COMMAND} {args.old} {args.new} --steps {args.steps} --repeats {args.repeats}"
    cmd += f" --method {args.method} --hidden {args.hidden} --seed {args.seed}"
    cmd += "".join(f" --set {s}" for s in args.set)
    cmd += f" --instructions --instr-steps {args.instr_steps}" if args.instructions else ""
    lines = [
        f"## {old.name} -> {new.name} ({started:%Y-%m-%d %H:%M} UTC)",
        "",
        f"- old: {old.described}",
        f"- new: {new.described}",
        f"- run: PredatorPrey {LABEL[args.method]}, H {args.hidden}, seed {args.seed}, "
        f"{args.steps} env steps, one thread, W&B off"
        + (f", {' '.join(args.set)}" if args.set else ""),
        f"- command (repository root, venv active): `{cmd}`",
        f"- machine: `{m['uname']}`, {m['cores']} cores, {m['cpu']}, Python {m['python']}",
        f"- load at start: {loads[0]}",
        f"- load at end: {loads[1]}",
        f"- kernels: {', '.join(f'{co.name} {Path(k).name}' for co, k in zip(checkouts, kernels, strict=True))}",
        "",
    ]
    if rounds:
        ident = all(rd["identical"] for rd in rounds)
        lines += [
            f"Side by side, both at once, one core each (`taskset`), {len(rounds)} rounds with "
            f"the cores swapped; new / old. Metrics (training columns) identical: "
            f"{'yes' if ident else 'NO: ' + '; '.join(rd['why'] for rd in rounds if rd['why'])}"
            f"; the same in every round: {'yes' if rounds[0]['repeatable'] else 'NO'}.",
            "",
            "| round | cores old/new | old wall s | new wall s | ratio | old run clock s | "
            "new run clock s | ratio (at env steps) | old CPU s | new CPU s | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r, rd in enumerate(rounds):
            a, b = rd["runs"][old.name], rd["runs"][new.name]
            lines.append(
                f"| {r} | {a['core']}/{b['core']} | {a['wall']:.1f} | {b['wall']:.1f} | "
                f"{b['wall'] / a['wall']:.3f}x | {a['clock']:.1f} | {b['clock']:.1f} | "
                f"{clock_ratio(rd)} ({rd['clock_steps']}) | {a['cpu']:.1f} | "
                f"{b['cpu']:.1f} | {b['cpu'] / a['cpu']:.3f}x |"
            )
        for key, what in (("wall", "wall"), ("clock", "run clock"), ("cpu", "CPU")):
            rs = [
                rd["runs"][new.name][key] / rd["runs"][old.name][key]
                for rd in rounds
                if rd["runs"][old.name][key] > 0  # no run clock: no evaluation after 0
            ]
            if not rs:
                continue
            lines.append(f"\n{what}: new / old {ratio_range(rs)} over the rounds")
        lines.append("")
    if instr:
        S = args.instr_steps
        a, b = instr[old.name], instr[new.name]
        whole = b[2 * S]["ir"] / a[2 * S]["ir"]
        loop = (b[2 * S]["ir"] - b[S]["ir"]) / (a[2 * S]["ir"] - a[S]["ir"])
        lines += [
            f"Instructions (callgrind, AVX2 kernel build, budgets S = {S} and 2S with "
            f"evaluations every S); metrics identical at 2S: "
            f"{'yes' if instr['identical'] else 'NO: ' + instr['why']}.",
            "",
            "| | old Ir | new Ir | new / old |",
            "|---|---|---|---|",
            f"| budget S | {a[S]['ir']:,} | {b[S]['ir']:,} | {b[S]['ir'] / a[S]['ir']:.4f}x |",
            f"| budget 2S | {a[2 * S]['ir']:,} | {b[2 * S]['ir']:,} | {whole:.4f}x |",
            f"| 2S - S (training loop) | {a[2 * S]['ir'] - a[S]['ir']:,} | "
            f"{b[2 * S]['ir'] - b[S]['ir']:,} | {loop:.4f}x |",
            "",
        ]
    return lines


HEADER = """# Two commits side by side (`bench/bench_commits.py`)

One section per comparison, newest last: the same training run at two commits, at once, one
core each, with identical metrics; new / old above 1 means the new commit is slower. See the
script's docstring for what each column measures and docs/development.md for when to run it.
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", help="commit (any git revision) or 'worktree'")
    p.add_argument("new", help="commit (any git revision) or 'worktree'")
    p.add_argument("--steps", type=int, default=30000, help="env steps of the timed runs")
    p.add_argument("--repeats", type=int, default=2, help="rounds, cores swapped each round")
    p.add_argument("--method", choices=list(METHODS), default="nps:comm")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="extra train key=value, both")
    p.add_argument("--instructions", action="store_true", help="also count instructions")
    p.add_argument("--instr-steps", type=int, default=3000, help="S for --instructions")
    p.add_argument("--no-timing", action="store_true", help="only --instructions")
    p.add_argument("--out", default="bench/results/commits.md", help="appended to")
    args = p.parse_args()
    if shutil.which("taskset") is None:
        raise SystemExit("taskset not found (util-linux)")
    if args.instructions and shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind")
    started = datetime.datetime.now(datetime.UTC)
    tmp = Path(tempfile.mkdtemp(prefix="bench_commits_"))
    checkouts = []
    try:
        checkouts = [Checkout(rev, tmp) for rev in (args.old, args.new)]
        kernels = [co.build_kernel() for co in checkouts]
        if args.instructions:
            for co in checkouts:
                co.build_kernel(NO_AVX512)
        loads = [load_line()]
        rounds = [] if args.no_timing else side_by_side(checkouts, args, tmp)
        instr = instructions(checkouts, args, tmp) if args.instructions else None
        loads.append(load_line())
        lines = report(checkouts, args, rounds, instr, kernels, loads, started)
    finally:
        for co in checkouts:
            co.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.out)
    text = out.read_text() if out.exists() else HEADER
    out.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines).rstrip("\n") + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
