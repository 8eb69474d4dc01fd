"""Operating-system trouble ends in one clear line, not a traceback: out= under a file or on a
read-only file system, a full disk (the previous checkpoint stays intact and the rerun
resumes), Ctrl-C while starting, too little memory, online W&B without an API key. And the
progress line in a log file says how far the run is and when it will end."""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from learner_helpers import SMALL_RUN, run_train

from ficomm import tracking
from ficomm.config import make_config
from ficomm.run_lock import LOCK_NAME
from ficomm.train import EXIT_INTERRUPTED

ARGS = [*SMALL_RUN, "budget=1000", "eval_interval=500"]


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def _popen(args, **kw):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("WANDB_MODE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "ficomm.train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


# ------------------------------------------------------------------ out= that cannot work
def test_out_under_a_regular_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run_train([*ARGS, f"out={blocker / 'run'}"])
    assert res.returncode == 2
    line = _one_line(res.stderr)
    assert "config error: out:" in line and f"{blocker} is a file" in line
    res = run_train([*ARGS, f"out={blocker}"])
    assert res.returncode == 2
    assert f"{blocker} exists and is not a directory" in _one_line(res.stderr)


def _namespace_or_skip(tmp_path) -> Path:
    """A mount point where a user+mount namespace (`unshare -rm`, no root needed) can mount a
    tmpfs; skips where such namespaces are unavailable."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs '{mnt}'"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"unprivileged user+mount namespaces unavailable: {probe.stderr.strip()}")
    return mnt


def _in_namespace(script: str, **env) -> None:
    res = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PY": sys.executable, "PYTHONHASHSEED": "0", **env},
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_read_only_file_system(tmp_path):
    mnt = _namespace_or_skip(tmp_path)
    args = " ".join(ARGS)
    _in_namespace(
        f"""set -e
        mount -t tmpfs -o size=4m tmpfs "$MNT"; mkdir "$MNT/old"; mount -o remount,ro "$MNT"
        set +e
        "$PY" -m ficomm.train {args} out="$MNT/new" 2> "$LOG/new.err"; echo $? > "$LOG/new.rc"
        "$PY" -m ficomm.train {args} out="$MNT/old" 2> "$LOG/old.err"; echo $? > "$LOG/old.rc"
        """,
        MNT=str(mnt),
        LOG=str(tmp_path),
    )
    for name, phrase in (("new", "cannot create"), ("old", "is not writable")):
        assert (tmp_path / f"{name}.rc").read_text().strip() == "2"
        line = _one_line((tmp_path / f"{name}.err").read_text())
        assert "config error: out:" in line and phrase in line
        assert "Read-only file system" in line and "choose another out=" in line


# ------------------------------------------------------------------ full disk
FULL_ARGS = [*SMALL_RUN, "kernel=torch", "budget=4000", "eval_interval=500"]


def _stopped_run(out: Path) -> int:
    """A run stopped by SIGTERM after a few evaluations; its env step."""
    proc = _popen([*FULL_ARGS, f"out={out}"])
    csv, deadline = out / "metrics.csv", time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if csv.exists() and len(csv.read_text().splitlines()) >= 3:  # header + 2 evaluations
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_INTERRUPTED, err
    return int(re.search(r"received SIGTERM at env step (\d+)", err)[1])


@pytest.mark.parametrize("how", ["file_size_limit", "full_tmpfs"])
def test_full_disk_keeps_the_checkpoint_and_the_rerun_resumes(tmp_path, how):
    out = tmp_path / "run"
    mnt = _namespace_or_skip(tmp_path) if how == "full_tmpfs" else None
    step = _stopped_run(out)
    state = out / "checkpoint" / "state.pt"
    before = state.read_bytes()

    if how == "file_size_limit":  # RLIMIT_FSIZE: writes past it fail with EFBIG
        limit = len(before) // 2

        def limit_file_size():
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        res = run_train([*FULL_ARGS, f"out={out}"], preexec_fn=limit_file_size)
        rc, err, reason = res.returncode, res.stderr, "File too large"
    else:  # a real ENOSPC: the run on a tmpfs filled up to 64 KiB, copied back afterwards
        fill = (
            "import os, sys; s = os.statvfs(sys.argv[1]); left = s.f_bavail * s.f_frsize - 65536;"
            " f = open(sys.argv[1] + '/filler', 'wb')\n"
            "while left > 0: left -= f.write(bytes(min(left, 1 << 20)))"
        )
        _in_namespace(
            f"""set -e
            mount -t tmpfs -o size=16m tmpfs "$MNT"; cp -a "$RUN" "$MNT/run"
            "$PY" -c "$FILL" "$MNT"
            set +e
            "$PY" -m ficomm.train {" ".join(FULL_ARGS)} out="$MNT/run" 2> "$LOG/err"
            echo $? > "$LOG/rc"
            set -e
            rm -r "$RUN"; cp -a "$MNT/run" "$RUN"
            """,
            MNT=str(mnt),
            RUN=str(out),
            LOG=str(tmp_path),
            FILL=fill,
        )
        rc = int((tmp_path / "rc").read_text())
        err, reason = (tmp_path / "err").read_text(), "No space left on device"

    assert rc == 1, err
    assert f"resuming {out if mnt is None else mnt / 'run'} from its checkpoint" in err
    line = _one_line("\n".join(s for s in err.splitlines() if "resuming" not in s))
    assert "cannot write" in line and "state.pt.tmp" in line and reason in line
    assert "the last checkpoint is intact" in line and "rerun the same command" in line
    assert state.read_bytes() == before
    assert not list(out.rglob("*.tmp"))

    # A leftover temporary file (a kill in the middle of a write) does not block the rerun.
    (out / "checkpoint" / "state.pt.tmp").write_bytes(b"partial")
    res = run_train([*FULL_ARGS, f"out={out}"])
    assert res.returncode == 0, res.stderr
    assert f"resuming {out} from its checkpoint at env step {step}" in res.stderr
    assert not list(out.rglob("*.tmp"))


# ------------------------------------------------------------------ signals, memory, W&B
# Ctrl-C exactly while torch is being imported: an import hook in the child sends SIGINT to
# its own process when `import torch` starts, so the test does not race the import. (A shell
# starts background jobs with SIGINT ignored; the child restores Python's handler first.)
_SIGINT_AT_TORCH_IMPORT = """
import os, runpy, signal, sys
class SigintAtTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None
signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal's Ctrl-C finds it
sys.meta_path.insert(0, SigintAtTorch())
sys.argv = ["ficomm.train", *sys.argv[1:]]
runpy.run_module("ficomm.train", run_name="__main__", alter_sys=True)
"""


def test_ctrl_c_while_importing_gives_one_line(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("WANDB_MODE", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SIGINT_AT_TORCH_IMPORT, *ARGS, f"out={tmp_path / 'run'}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_INTERRUPTED, err
    line = _one_line(err)
    assert "interrupted" in line or "received SIGINT" in line
    assert not (tmp_path / "run").exists()  # nothing was written


def test_too_little_memory_gives_one_line(tmp_path):
    out = tmp_path / "run"

    def cap_address_space():  # the allocation fails at once, whatever the overcommit policy
        resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))

    res = run_train([*ARGS, "hidden=1e9", f"out={out}"], preexec_fn=cap_address_space)
    assert res.returncode == 1
    line = _one_line(res.stderr)
    assert "out of memory" in line and "hidden=1000000000" in line and "lower hidden" in line
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]


def test_online_wandb_without_api_key_gives_one_line(tmp_path):
    out = tmp_path / "run"
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(home), WANDB_CONFIG_DIR=str(home / "wandb"), PYTHONHASHSEED="0")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "ficomm.train",
            *SMALL_RUN,
            "budget=1000",
            "eval_interval=500",
            "wandb_mode=online",
            f"out={out}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert res.returncode == 1
    line = _one_line(res.stderr)
    assert "W&B could not start the online run" in line and "wandb login" in line
    assert not (out / "config.yaml").exists() and not (out / "checkpoint").exists()


# ------------------------------------------------------------------ progress in a log
LINE = re.compile(
    r"^\[ficomm NPS\+IQL\+COMM h16 s0\] +(?P<pct>\d+\.\d)%  env step (?P<step>\d+)/1000  "
    r"return -?\d+\.\d\d  eps \d\.\d{3}.*  eta (?P<eta>\?|\d+s|\d+m\d\ds|\d+h\d\dm|\d+d\d\dh)$"
)


def test_log_lines_carry_percent_and_eta(tmp_path):
    res = run_train([*ARGS, f"out={tmp_path / 'run'}"])  # stderr is a pipe: the log form
    assert res.returncode == 0, res.stderr
    lines = [s for s in res.stderr.splitlines() if s.startswith("[ficomm")]
    assert len(lines) == 3, res.stderr  # 0, 500, and the final evaluation at the budget
    matches = [LINE.match(s) for s in lines]
    assert all(matches), lines
    first, second, last = matches
    assert last["pct"] == "100.0" and last["eta"] == "0s"
    assert first["pct"] == "0.0" and first["step"] == "0" and first["eta"] == "?"
    assert float(second["pct"]) == pytest.approx(int(second["step"]) / 10, abs=0.05)
    assert second["eta"] != "?" and "steps/s" in lines[1]


def test_eta_is_the_time_left_at_the_measured_rate(monkeypatch, capsys):
    cfg = make_config({"budget": 1000, "eval_interval": 100, "hidden": 16})
    now = [100.0]
    monkeypatch.setattr(tracking.time, "perf_counter", lambda: now[0])
    progress = tracking.Progress(cfg, start_steps=200)  # resumed at step 200
    now[0] += 40.0  # 200 more steps in 40 s: 5 steps/s, 600 left -> 2 minutes
    progress.report({"env_steps": 400, "eval_return_mean": -4.0, "epsilon": 0.5})
    line = capsys.readouterr().err.strip()
    assert " 40.0%  env step 400/1000" in line and line.endswith("eta 2m00s")
    assert [tracking.format_duration(s) for s in (5, 3599, 3600 * 5 + 61, 86400 * 2)] == [
        "5s",
        "59m59s",
        "5h01m",
        "2d00h",
    ]
