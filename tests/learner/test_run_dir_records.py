"""A finished run's files: a damaged checkpoint is refused by its checksum and nothing is
touched; a rerun never rewrites the records; missing or damaged records are rebuilt from the
checkpoint; checkpoints from before checksums and records still work."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from learner_helpers import SMALL_RUN, run_train

from ficomm.checkpoint import CHECKSUM_NAME
from ficomm.run_lock import LOCK_NAME

ARGS = [*SMALL_RUN, "budget=1000", "eval_interval=500"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    res = run_train([*ARGS, f"out={out}"])
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of the finished run, at the same out= (the records name it)."""
    saved = tmp_path / "saved"
    shutil.copytree(finished_run, saved)
    yield finished_run
    shutil.rmtree(finished_run)
    shutil.copytree(saved, finished_run)


def _snapshot(out):
    """Content and modification time of every file but the lock."""
    return {
        p.relative_to(out): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


def test_damaged_checkpoint_is_refused_and_nothing_is_touched(run_copy):
    out = run_copy
    path = out / "checkpoint" / "state.pt"
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    path.write_bytes(bytes(data))
    before = _snapshot(out)
    res = run_train([*ARGS, f"out={out}"])
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert f"checkpoint {path} is damaged" in lines[0]
    assert f"delete the folder {out / 'checkpoint'}" in lines[0] and "restore" in lines[0]
    assert "different configuration" not in lines[0] and "lr" not in lines[0].split(": ")[0]
    assert _snapshot(out) == before


def test_lost_checksum_file_is_refused(run_copy):
    (run_copy / "checkpoint" / CHECKSUM_NAME).unlink()
    res = run_train([*ARGS, f"out={run_copy}"])
    assert res.returncode == 1 and "lost its checksum file" in res.stderr


def test_rerun_with_other_execution_keys_rewrites_nothing(run_copy):
    before = _snapshot(run_copy)
    res = run_train([*ARGS, "threads=2", "kernel=torch", "wandb_tags=[other]", f"out={run_copy}"])
    assert res.returncode == 0, res.stderr
    assert "already finished" in res.stderr
    assert _snapshot(run_copy) == before  # records, metrics.csv, checkpoint: same bytes, mtimes


def test_missing_or_damaged_records_are_rebuilt_from_the_checkpoint(run_copy):
    out = run_copy
    config, info = (out / "config.yaml").read_bytes(), (out / "run_info.json").read_bytes()
    (out / "run_info.json").write_text("")  # empty: once a JSONDecodeError traceback
    (out / "config.yaml").unlink()
    res = run_train([*ARGS, "threads=2", f"out={out}"])
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    for name in ("config.yaml", "run_info.json"):
        assert f"{out / name} was missing or damaged; rebuilt from the checkpoint" in res.stderr
    # Rebuilt as the run wrote them, not from this rerun's threads=2.
    assert (out / "config.yaml").read_bytes() == config
    assert (out / "run_info.json").read_bytes() == info


def test_checkpoint_from_before_checksums_and_records_is_accepted(run_copy):
    out = run_copy
    path = out / "checkpoint" / "state.pt"
    state = torch.load(path, weights_only=True)
    state["format"] = 1
    del state["records"]
    torch.save(state, path)
    (out / "checkpoint" / CHECKSUM_NAME).unlink()
    info = json.loads((out / "run_info.json").read_text())
    (out / "run_info.json").write_text("{")
    res = run_train([*ARGS, f"out={out}"])
    assert res.returncode == 0, res.stderr
    assert "predates checksums" in res.stderr and "already finished" in res.stderr
    assert "rebuilt from this configuration" in res.stderr
    assert json.loads((out / "run_info.json").read_text()) == info
