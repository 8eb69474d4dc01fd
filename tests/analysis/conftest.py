"""Fixtures for the analysis tests: a synthetic 24-configuration grid, aggregated once."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_runs import make_runs


@pytest.fixture(scope="session")
def grid_root(tmp_path_factory) -> Path:
    """The full 24-configuration grid with 3 seeds, written once per session."""
    root = tmp_path_factory.mktemp("runs")
    make_runs(root)
    return root


@pytest.fixture(scope="session")
def grid_csv(grid_root, tmp_path_factory) -> Path:
    from ficomm.analysis.aggregate import aggregate_runs

    out = tmp_path_factory.mktemp("agg") / "all_runs.csv"
    aggregate_runs([grid_root]).to_csv(out, index=False)
    return out
