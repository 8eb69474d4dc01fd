"""Does a shipped run train exactly as an older commit of ficomm would, on this machine?

    python bench/same_training.py OLD_COMMIT RUN_DIR [--steps 30000]

Trains RUN_DIR's configuration (its config.yaml) for --steps env steps with the code of
OLD_COMMIT (a temporary git worktree, imported through PYTHONPATH, so the compiled kernel is
built from that commit's sources) and compares the training columns of every evaluation both
have with RUN_DIR's metrics.csv. Used for the replication's reruns: the new code adds message
interventions and a final evaluation, and must leave training untouched. Exit code 0 when
every compared value is identical.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TRAINING = (
    "env_steps",
    "episodes",
    "grad_steps",
    "eval_return_mean",
    "eval_return_std",
    "eval_length_mean",
    "eval_captures_mean",
    "train_loss",
    "epsilon",
)
KEYS = ("env", "backend", "share", "comm", "hidden", "seed", "eval_interval", "eval_episodes")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--steps", type=int, default=30_000)
    args = p.parse_args()
    cfg = yaml.safe_load((args.run_dir / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        wt, out = Path(tmp) / "old", Path(tmp) / "run"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(wt), args.old], check=True)
        try:
            cmd = [sys.executable, "-m", "ficomm.train", f"out={out}", f"budget={args.steps}"]
            cmd += [f"{k}={cfg[k]}" for k in KEYS if k in cfg]
            cmd += [f"env_args.{k}={v}" for k, v in (cfg.get("env_args") or {}).items()]
            cmd += ["wandb_mode=disabled", "threads=1"]
            env = {**os.environ, "PYTHONPATH": str(wt / "src")}
            subprocess.run(cmd, check=True, env=env, cwd=tmp, stderr=subprocess.DEVNULL)
            old = list(csv.DictReader(open(out / "metrics.csv")))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(wt)], check=True)
    new = list(csv.DictReader(open(args.run_dir / "metrics.csv")))
    differ = [
        (o["env_steps"], c, o[c], n.get(c))
        for o, n in zip(old, new, strict=False)
        for c in TRAINING
        if c in o and o[c] != n.get(c)
    ]
    print(
        f"{args.run_dir} vs {args.old} at {args.steps} env steps: {len(old)} evaluations "
        f"compared, {len(differ)} differing values"
    )
    for d in differ[:10]:
        print("  env step {}: {} old {} new {}".format(*d))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
