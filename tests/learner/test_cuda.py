"""The GPU path: `ficomm train device=cuda` (torch layers on the device), alone and packed.

These tests need a CUDA device and a CUDA build of torch; CI and the project's usual machines
have neither, so here they are skipped (the reason is printed with `pytest -rs`). Where a GPU
is lent, run them with `pytest tests/learner/test_cuda.py -rs`. Without CUDA, a `device=cuda`
request fails before training: tests/learner/test_train.py::test_bad_input_fails_before_training.
"""

from __future__ import annotations

import pytest
import torch
from learner_helpers import SMALL_RUN, read_metrics
from test_pack import PACKS, _alone_args, _pack_args

from ficomm.train import main as train_main

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=f"needs a CUDA device and a CUDA build of torch (this is torch {torch.__version__}, "
    f"CUDA build: {torch.version.cuda or 'none'})",
)
EVAL = ["eval_interval=500"]


def _floats(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r[key]]


@pytest.mark.parametrize("learning", list(PACKS))
@pytest.mark.parametrize("method", [["share=ps", "comm=true"], ["share=nps", "comm=true"]])
def test_packed_runs_on_cuda_equal_the_same_runs_alone_on_cuda(tmp_path, method, learning):
    """stacked: one acting forward and one gradient step for the pack on the device."""
    pack = PACKS[learning]
    base = [*SMALL_RUN, *EVAL, *method, "device=cuda"]
    assert train_main([*base, *_pack_args(pack), f"out={tmp_path}/pack/s{{seed}}"]) == 0
    for i, seed in enumerate(pack["seed"]):
        assert train_main([*base, *_alone_args(pack, i), f"out={tmp_path}/alone/s{seed}"]) == 0
        packed = read_metrics(tmp_path / "pack" / f"s{seed}" / "metrics.csv")
        alone = read_metrics(tmp_path / "alone" / f"s{seed}" / "metrics.csv")
        assert [r["env_steps"] for r in packed] == [r["env_steps"] for r in alone]
        assert _floats(packed, "train_loss") == pytest.approx(
            _floats(alone, "train_loss"), rel=1e-4
        )


def test_a_cuda_run_follows_the_cpu_torch_run_at_first(tmp_path):
    """The same run on the device and with the CPU torch layers: the same first episodes
    (before the networks' rounding can change an action) and float32-close first losses."""
    base = [*SMALL_RUN, "budget=1000", "eval_interval=500", "share=nps", "comm=true"]
    assert train_main([*base, "device=cuda", f"out={tmp_path}/cuda"]) == 0
    assert train_main([*base, "device=cpu", "kernel=torch", f"out={tmp_path}/cpu"]) == 0
    cuda = read_metrics(tmp_path / "cuda" / "metrics.csv")
    cpu = read_metrics(tmp_path / "cpu" / "metrics.csv")
    assert cuda[0] == cpu[0]  # the untrained policy's evaluation
    assert _floats(cuda, "train_loss")[:1] == pytest.approx(
        _floats(cpu, "train_loss")[:1], rel=1e-3
    )
