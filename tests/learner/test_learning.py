"""A short, seeded PredatorPrey run learns: the greedy return rises clearly above that of the
untrained policy (PS+IQL, H 32, batch 16, epsilon annealed over 5k steps, 10k steps)."""

from __future__ import annotations

import pytest
from learner_helpers import read_metrics, run_train


@pytest.mark.slow
def test_short_run_lifts_the_greedy_return(tmp_path):
    out = tmp_path / "run"
    args = [
        "env=predator_prey",
        "share=ps",
        "comm=false",
        "hidden=32",
        "batch_size=16",
        "eps_anneal=5000",
        "budget=10100",
        "eval_interval=2500",
        "seed=0",
        "threads=1",
        "wandb_mode=disabled",
        f"out={out}",
    ]
    res = run_train(args, timeout=600)
    assert res.returncode == 0, res.stderr
    returns = [float(r["eval_return_mean"]) for r in read_metrics(out / "metrics.csv")]
    assert len(returns) == 6  # 0, 2500, ..., 10000, and the final policy's at 10100
    untrained, trained = returns[0], sum(returns[-2:]) / 2
    # untrained greedy predators stand next to prey (-0.75 per agent per step);
    # after 10k steps they at least stop doing so
    assert trained > untrained + 5, returns
