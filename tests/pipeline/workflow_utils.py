"""Helpers for the workflow tests: a scratch copy of the workflow and Snakemake runs in it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_FILES = ("Snakefile", "workflow", "config")
SNAKEMAKE = (sys.executable, "-m", "snakemake")


def copy_workflow(dest: Path, overlay: dict | None = None) -> Path:
    """Copy the workflow (Snakefile, workflow/, config/) to `dest`, as a user's clone has it, so
    that results/ and paper_figures/ are written there. `overlay` is written to
    `dest/overlay.yaml` for `--configfile overlay.yaml`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    if overlay is not None:
        write_overlay(dest, overlay)
    return dest


def write_overlay(workdir: Path, overlay: dict, name: str = "overlay.yaml") -> Path:
    path = workdir / name
    path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    return path


def job_env(**extra: str) -> dict[str, str]:
    """The environment for Snakemake and its jobs: one thread per process (a 2-core machine),
    no W&B network access."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
        WANDB_SILENT="true",
        PYTHONUNBUFFERED="1",
    )
    env.pop("WANDB_MODE", None)  # the workflow's config decides
    env.update(extra)
    return env


def start_snakemake(workdir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """Start Snakemake in `workdir` in its own process group (see kill_group)."""
    return subprocess.Popen(
        [*SNAKEMAKE, *args],
        cwd=workdir,
        env=env or job_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def snakemake(
    workdir: Path, *args: str, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run Snakemake in `workdir`; kill it (and its jobs) after `timeout` seconds."""
    proc = start_snakemake(workdir, *args, env=env)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        kill_group(proc)
        out, _ = proc.communicate()
        raise AssertionError(
            f"snakemake {' '.join(args)} timed out after {timeout}s:\n{out[-5000:]}"
        ) from exc
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group that `proc` leads (started with start_new_session=True)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def descendants(pid: int) -> list[int]:
    """Process ids below `pid` (children first), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def job_counts(dry_run_output: str) -> dict[str, int]:
    """{rule: count} from the 'Job stats' table of a Snakemake (dry) run."""
    counts: dict[str, int] = {}
    lines = dry_run_output.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Job stats:":
            for row in lines[i + 3 :]:
                m = re.fullmatch(r"\s*(\S+)\s+(\d+)\s*", row)
                if not m or m.group(1) == "total":
                    break
                counts[m.group(1)] = int(m.group(2))
            break
    return counts


def shell_commands(dry_run_output: str, program: str = "ficomm train") -> list[str]:
    """The shell commands of `snakemake -n -p` that start with `program`."""
    commands = []
    for line in dry_run_output.splitlines():
        line = line.strip().removeprefix("Shell command:").strip()
        if line.startswith(program):
            commands.append(line)
    return commands
