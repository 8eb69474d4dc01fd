#!/usr/bin/env bash
# Runs once after Snakemake creates envs/ficomm.yaml's environment, from the working directory.
set -euo pipefail
# Pinned: the CPU/CUDA wheel ficomm was tested with (a looser pin can pull an untested release).
"$CONDA_PREFIX/bin/python" -m pip install --no-input "torch==2.13.0"
"$CONDA_PREFIX/bin/python" -m pip install --no-input ".[smax,pipeline]"
