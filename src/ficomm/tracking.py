"""Where a run's numbers go: the tidy metrics.csv, Weights & Biases, and the console.

metrics.csv is always rewritten whole (atomically) from the run's metric history, which the
checkpoint holds, so a deleted or stale CSV is recreated on resume.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from ficomm.config import Config

COLUMNS = [
    "env_steps",
    "episodes",
    "grad_steps",
    "eval_return_mean",
    "eval_return_std",
    "eval_win_rate",
    "eval_length_mean",
    "train_loss",
    "epsilon",
    "wall_time",
    "env_steps_per_sec",
]


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


class TrackingError(RuntimeError):
    """W&B could not start the run."""


def wandb_start_failure(exc: BaseException, mode: str, what: str, switch: str) -> str:
    """One line for a W&B run that would not start: wandb's own first line, and what to do
    (`switch` names the setting, e.g. "train with wandb_mode={}")."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    hint = (
        f"log in with `wandb login` or set WANDB_API_KEY, or {switch.format('offline')} and "
        "upload later with `wandb sync`"
        if mode == "online"
        else f"{switch.format('disabled')} to go without W&B"
    )
    return f"W&B could not start the {mode} {what} ({type(exc).__name__}: {first}); {hint}"


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename; a failed write (full disk) removes the
    temporary file and leaves the previous content."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def write_metrics_csv(path: Path, history: list[dict[str, Any]], backend: str) -> None:
    write_atomic(path, metrics_csv_text(history, backend))


def metrics_csv_text(history: list[dict[str, Any]], backend: str) -> str:
    """One row per evaluation; empty cells where a value does not exist (no win signal,
    no training loss before the first gradient step). The last column names the backend, so
    a CSV read on its own never passes SMAX results off as StarCraft II ones."""
    columns = COLUMNS + sorted({k for row in history for k in row} - set(COLUMNS))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*columns, "backend"])
    for row in history:
        writer.writerow([*(_cell(row.get(c)) for c in columns), backend])
    return buf.getvalue()


def wandb_run_id(config_hash: str, out: Path) -> str:
    """Stable id: the same config in the same run directory continues the same W&B run."""
    return hashlib.sha256(f"{config_hash}:{out.resolve()}".encode()).hexdigest()[:16]


def wandb_mode(cfg: Config) -> str:
    """WANDB_MODE in the environment wins over the config."""
    mode = os.environ.get("WANDB_MODE") or cfg.wandb_mode
    return "disabled" if mode in ("disabled", "dryrun_disabled") else mode


def wandb_tags(cfg: Config) -> list[str]:
    base = [
        f"env:{cfg.env}",
        f"backend:{cfg.backend}",
        f"share:{cfg.share}",
        f"comm:{str(cfg.comm).lower()}",
        f"hidden:{cfg.hidden}",
        f"method:{cfg.method}",
        f"seed:{cfg.seed}",
    ]
    if cfg.preset:
        base.append(f"preset:{cfg.preset}")
    return base + list(cfg.wandb_tags)


class WandbTracker:
    """One W&B run per training run; resumes the same run id after a restart."""

    def __init__(self, cfg: Config, out: Path, run_id: str, run_info: dict):
        self.run = None
        mode = wandb_mode(cfg)
        if mode == "disabled":
            return
        import wandb

        (out / "wandb").mkdir(parents=True, exist_ok=True)
        try:
            self.run = wandb.init(
                project=cfg.wandb_project,
                entity=cfg.wandb_entity,
                group=cfg.group_name(),
                tags=wandb_tags(cfg),
                name=cfg.run_name(),
                job_type="train",
                config={
                    **cfg.to_dict(),
                    "method": cfg.method,
                    "env_facts": run_info.get("env_facts", {}),  # e.g. the game build
                    **{f"info/{k}": v for k, v in run_info.items() if k != "env_facts"},
                },
                id=run_id,
                resume="allow",
                reinit="create_new",  # the runs of a pack are W&B runs side by side
                # W&B writes into <dir>/wandb; absolute because an inherited WANDB_SERVICE
                # means a wandb-core with another working directory does the writing.
                dir=str(out.resolve()),
                mode=mode,
                settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
            )
        except Exception as exc:  # no API key, no network, bad entity: wandb's own types
            raise TrackingError(
                wandb_start_failure(exc, mode, "run", "train with wandb_mode={}")
            ) from None

    def log(self, row: dict[str, Any]) -> None:
        if self.run is not None:
            clean = {k: v for k, v in row.items() if v is not None}
            self.run.log(clean, step=int(row["env_steps"]))

    def finish(self, exit_code: int = 0) -> None:
        """End the W&B run; offline, wait until its run file is complete, because
        `run.finish()` can return before wandb-core has flushed it (always so when a
        WANDB_SERVICE inherited from the parent process does the writing)."""
        if self.run is None:
            return
        offline = self.run.settings.mode == "offline"
        run_dir = Path(self.run.dir).parent
        self.run.finish(exit_code=exit_code)
        self.run = None
        if offline:
            from ficomm.wandb_files import wait_until_complete

            record = next(run_dir.glob("run-*.wandb"), None)
            if record is None or not wait_until_complete(record):
                print(
                    f"ficomm train: warning: W&B did not finish writing {record or run_dir} "
                    "within 60 s; `wandb sync` may miss its last records",
                    file=sys.stderr,
                )


def format_duration(seconds: float) -> str:
    """45s, 12m05s, 3h07m, 2d04h: short enough for a log line."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class Progress:
    """A tqdm bar on a terminal, one plain line per evaluation otherwise (logs, SLURM), with
    the percentage of the budget done and the time left at this session's measured rate, so
    that `tail` on a job's log tells how far the run is and when it will end."""

    def __init__(self, cfg: Config, start_steps: int, position: int = 0):
        self.cfg = cfg
        self.interactive = sys.stderr.isatty()
        self.bar = None
        self.start = self.last = start_steps
        if self.interactive:
            from tqdm import tqdm

            self.bar = tqdm(
                total=cfg.budget,
                initial=start_steps,
                unit="step",
                desc=f"{cfg.method} h{cfg.hidden} s{cfg.seed}",
                dynamic_ncols=True,
                position=position,  # the runs of a pack, one bar each
            )
        self.t0 = time.perf_counter()

    def advance(self, env_steps: int) -> None:
        if self.bar is not None:
            self.bar.update(env_steps - self.last)
            self.last = env_steps

    def eta(self, env_steps: int) -> str:
        """Time left at the rate of this session so far (evaluations included, since they
        recur); '?' before any step was measured."""
        elapsed, done = time.perf_counter() - self.t0, env_steps - self.start
        if done <= 0 or elapsed <= 0:
            return "?"
        return format_duration(max(self.cfg.budget - env_steps, 0) * elapsed / done)

    def report(self, row: dict[str, Any]) -> None:
        ret, loss, steps = row["eval_return_mean"], row.get("train_loss"), row["env_steps"]
        text = (
            f"env step {steps}/{self.cfg.budget}  return {ret:.2f}"
            f"  eps {row['epsilon']:.3f}"
            + (f"  loss {loss:.4g}" if loss is not None else "")
            + (f"  win {row['eval_win_rate']:.2f}" if row.get("eval_win_rate") is not None else "")
        )
        if self.bar is not None:
            self.bar.set_postfix_str(f"return {ret:.2f}")
            self.bar.write(text, file=sys.stderr)
        else:
            rate = row.get("env_steps_per_sec")
            rate_s = f"  {rate:.0f} steps/s" if rate is not None else ""
            pct = 100 * steps / self.cfg.budget
            print(
                f"[ficomm {self.cfg.method} h{self.cfg.hidden} s{self.cfg.seed}] {pct:5.1f}%  "
                f"{text}{rate_s}  eta {self.eta(steps)}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
