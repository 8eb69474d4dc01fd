#!/usr/bin/env bash
# The GPU checks in one short run, for a machine with a GPU and a CUDA build of torch: the CUDA
# tests, then bench/bench_gpu.py (packs of 1, 5, 20 and 60 PredatorPrey runs, a 20-run pack
# learning per run as the reference, the gradient step against the matmul rate). About 10
# minutes on one H100/H200. Needs torch, numpy, pyyaml, tqdm and pytest importable by python3;
# the repository's src/ is put on the path (no install).
#
#   bash bench/gpu_check.sh [OUTDIR]      # logs and gpu.md in OUTDIR (default bench/results)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda,
  torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")' | tee "$out/gpu_env.log"
timeout 300 python3 -m pytest tests/learner/test_cuda.py -rs -q -p no:cacheprovider 2>&1 |
  tee "$out/cuda_tests.log"
timeout 420 python3 bench/bench_gpu.py --packs 1,5,20,60 --steps 2000 --out "$out/gpu.md" 2>&1 |
  tee "$out/bench_gpu.log"
