#!/usr/bin/env bash
# GPU readiness check (issue 11): the device-taking tests on CUDA, then one full-size step of each method in float32,
# bf16/fp16 autocast and torch.compile, one JSON line per case (benchmarks/gpu_check.py). About 10 minutes on one GPU.
#
#   benchmarks/gpu_check.sh                # on a CUDA machine
#   benchmarks/gpu_check.sh --cpu-smoke    # here: tiny sizes on the CPU, float32/bf16/fp16 (compile skipped: slow on CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--cpu-smoke" ]]; then
  python benchmarks/gpu_check.py --cpu-smoke --threads 1 --variants fp32 bf16 fp16
  exit 0
fi
python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu_check.sh: no CUDA device (use --cpu-smoke)")'
# the tests that take the `device` fixture (tests/conftest.py), on cuda
MEDGEN_TEST_DEVICE=cuda python -m pytest -q tests/networks/test_precision.py tests/inferers/test_base.py \
  tests/solvers/test_devices.py tests/solvers/test_cgls.py tests/diffusion/test_samplers.py
timeout 900 python benchmarks/gpu_check.py --device cuda "$@"
