"""Fixtures for the pipeline tests: a real single-node SLURM cluster (see slurm_cluster.py)."""

from __future__ import annotations

import os

import pytest
from slurm_cluster import SlurmCluster, missing_requirements


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node SLURM cluster with accounting, shared by the whole session.

    Skips where the machine cannot run one (not root, packages missing: `.ci/install-slurm`);
    with FICOMM_REQUIRE_SLURM=1 (CI) that is a failure instead of a skip.
    """
    problems = missing_requirements()
    if problems:
        reason = "no local SLURM cluster: " + "; ".join(problems)
        if os.environ.get("FICOMM_REQUIRE_SLURM") == "1":
            pytest.fail(reason + " (FICOMM_REQUIRE_SLURM=1)", pytrace=False)
        pytest.skip(reason)
    with SlurmCluster() as cluster:
        yield cluster
