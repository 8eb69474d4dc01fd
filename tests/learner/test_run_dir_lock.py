"""One writer per run directory: a second `ficomm train` on the same out= is refused, naming
the holder, having written nothing; the run that holds the lock finishes consistently."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml
from learner_helpers import SMALL_RUN, run_train

from ficomm import checkpoint
from ficomm.config import make_config
from ficomm.run_lock import LOCK_NAME, RunLock
from ficomm.train import EXIT_BUSY

ARGS = [*SMALL_RUN, "budget=2000", "eval_interval=500"]


def test_held_directory_is_refused_and_left_untouched(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):  # this test process is the holder
        res = run_train([*ARGS, f"out={out}"])
    assert res.returncode == EXIT_BUSY, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use by another ficomm train" in lines[0]
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in lines[0]
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]  # nothing else written
    # A dead holder leaves no lock: the same command now trains.
    res = run_train([*ARGS, f"out={out}"])
    assert res.returncode == 0, res.stderr


def _start(args):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("WANDB_MODE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "ficomm.train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _holder_pid(out, pids, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = json.loads((out / LOCK_NAME).read_text())["pid"]
        except (OSError, ValueError, KeyError):
            pid = None
        if pid in pids:
            return pid
        time.sleep(0.02)
    raise AssertionError("neither writer took the lock")


@pytest.mark.parametrize("lrs", [("5e-4", "5e-4"), ("5e-4", "1e-3")], ids=["same", "other_lr"])
def test_two_writers_started_together_one_trains_one_is_refused(tmp_path, lrs):
    out = tmp_path / "run"
    procs = [_start([*ARGS, f"lr={lr}", f"out={out}"]) for lr in lrs]
    try:
        holder = _holder_pid(out, {p.pid for p in procs})
        winner = next(p for p in procs if p.pid == holder)
        loser = next(p for p in procs if p.pid != holder)
        # Freeze the holder so that the other one meets the lock whatever the machine's speed.
        os.kill(winner.pid, signal.SIGSTOP)
        try:
            _, lose_err = loser.communicate(timeout=300)
        finally:
            os.kill(winner.pid, signal.SIGCONT)
        _, win_err = winner.communicate(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert winner.returncode == 0, win_err
    assert loser.returncode == EXIT_BUSY, lose_err
    lines = lose_err.strip().splitlines()
    assert len(lines) == 1, lose_err
    assert f"pid {winner.pid} on host {socket.gethostname()}" in lines[0]
    assert "different configuration" not in lose_err  # refused before reading anything

    # The finished run is the winner's, and its files agree with each other.
    state = checkpoint.load(out / "checkpoint")
    cfg = make_config(yaml.safe_load((out / "config.yaml").read_text()))
    info = json.loads((out / "run_info.json").read_text())
    assert state["finished"] and cfg.config_hash() == state["config_hash"] == info["config_hash"]
    assert cfg.lr == float(lrs[procs.index(winner)])
    assert (out / "config.yaml").read_text() == state["records"]["config.yaml"]
    metrics = (out / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 1 + len(state["history"])
