#!/usr/bin/env bash
# The prepared GPU check of issue 12, one command on a lent GPU (docs/performance.md):
#   bench/gpu.py over ViT-B/16, iGPT-S and ResNet-50 (eager and compiled, bf16, synthetic data; iGPT-S
#   also on CIFAR-10 JPEGs through its own data module), then `pytest -m gpu`.
# First, here: bash bench/gpu_wheels.sh. Then: run(command="bash bench/gpu_check.sh", carry=[".whl", ".data"],
# timeout_s=600). Results land in $OUT (the device tool's folder), else bench/results/gpu-check/.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline WANDB_SILENT=true PYTHONPATH=$PWD
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
fi
data=()
if [ -f .data/cifar10-jpeg/train.tar.gz ]; then
  mkdir -p /tmp/cifar10-jpeg
  tar -xzf .data/cifar10-jpeg/train.tar.gz -C /tmp/cifar10-jpeg && tar -xzf .data/cifar10-jpeg/test.tar.gz -C /tmp/cifar10-jpeg
  data=(--data_dir igpt_s=/tmp/cifar10-jpeg)
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 390 python3 bench/gpu.py "${data[@]}" --max_minutes 6 --out "$OUT/gpu.md" --out "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu.log"
bench=${PIPESTATUS[0]}
timeout 170 python3 -m pytest -m gpu -q -p no:cacheprovider --continue-on-collection-errors tests 2>&1 | tee "$OUT/pytest-gpu.log"
tests=${PIPESTATUS[0]}
echo "bench/gpu.py exit $bench; pytest -m gpu exit $tests"
exit $(( bench != 0 || tests != 0 ))
