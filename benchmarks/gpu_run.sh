#!/usr/bin/env bash
# Everything this project checks on a GPU machine, in two calls that each fit a 10-minute lease:
#   benchmarks/gpu_run.sh check   the baby-preset benchmark against PyTorch (and with the xp
#                                 reference kernels), then the whole test suite on the cupy backend
#   benchmarks/gpu_run.sh train   the baby preset for its 5000 iterations (nanoGPT's shakespeare_char)
# Run from the repository root with Tiny Shakespeare at $TINYGPT_DATA. Logs go to $OUT (default out/).
set -o pipefail
export PYTHONUNBUFFERED=1
# engine/ and kernels/ import as tinygrad_gpt.engine and tinygrad_gpt.kernels: through an install, not the tree
python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
OUT=${OUT:-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import cupy, numpy, torch; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'torch', torch.__version__)" | tee -a "$OUT/device.txt"
case "$1" in
check)
    python3 -m tinygrad_gpt bench --preset baby --backend cupy --iters 20 --warmup 3 --vs-torch --profile --json \
        2>&1 | tee "$OUT/bench_baby.txt"
    TINYGPT_KERNELS=xp python3 -m tinygrad_gpt bench --preset baby --backend cupy --iters 10 --warmup 3 --json \
        2>&1 | tee "$OUT/bench_baby_xp_kernels.txt"
    TINYGPT_BACKEND=cupy timeout 300 python3 -m pytest --backend cupy -q -p no:cacheprovider 2>&1 \
        | tee "$OUT/pytest_cupy.log" | tail -25
    ;;
train)
    run=/tmp/baby
    start=$(date +%s)
    timeout "${TRAIN_TIMEOUT:-540}" python3 -m tinygrad_gpt train --preset baby --backend cupy --out-dir "$run" \
        --eval-interval "${EVAL_INTERVAL:-250}" 2>&1 | tee "$OUT/train_baby.log" | tail -40
    echo "exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/train_baby.log"
    cp "$run"/log.jsonl "$run"/config.json "$OUT"/ 2>/dev/null
    python3 -m tinygrad_gpt sample --out-dir "$run" --backend cupy --prompt "ROMEO:" --max-new-tokens 400 --seed 1 \
        2>&1 | tee "$OUT/sample_baby.txt"
    ;;
*)
    echo "usage: $0 check|train" >&2
    exit 2
    ;;
esac
