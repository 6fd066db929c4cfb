#!/usr/bin/env bash
# The CUDA kernels on a GPU machine, in one go: the tests, compute-sanitizer over a few of them
# (memcheck for out-of-bounds access, racecheck for the flash kernels' shared-memory tiles), and
# the timing table. Logs go to $OUT (default: out/). Run from the repository root.
set -o pipefail
export PYTHONUNBUFFERED=1
# engine/ and kernels/ import as tinygrad_gpt.engine and tinygrad_gpt.kernels: through an install, not the tree
python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
OUT=${OUT:-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -m pytest tests/test_cuda_kernels.py -q -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log" | tail -60
python3 benchmarks/cuda_kernels.py 2>&1 | tee "$OUT/bench.md"
for tool in memcheck racecheck; do
    filter="flash_attention and not large and not 257"
    [ "$tool" = memcheck ] && filter="attention or 7-65 or 1000-1000"
    echo "== compute-sanitizer $tool: -k '$filter'"
    timeout 150 compute-sanitizer --tool "$tool" --error-exitcode 3 python3 -m pytest tests/test_cuda_kernels.py -q \
        -p no:cacheprovider -k "$filter" >"$OUT/sanitizer_$tool.log" 2>&1
    echo "exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$OUT/sanitizer_$tool.log" | tail -3
done
