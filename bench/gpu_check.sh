#!/usr/bin/env bash
# The prepared GPU check (docs/performance.md), one command on a lent GPU, at most about 8 minutes:
# each step has its own deadline, writes its result to $OUT as it goes, and a step that fails or runs out
# of time is recorded and the next one runs. The core steps (1-7) take at most 6 min 50 s.
#   1 FSDP by block (ViT) with norm clipping (pytest -m gpu tests/gpu -k fsdp_by_block)   25 s
#   2 iGPT-S eager vs compiled: ms/step, compiled-frame counts (bench/gpu.py)              90 s
#   3 ResNet-50 as shipped before vs cudnn.benchmark + fused AdamW; checkpoint vs step     60 s
#   4 loader images/s at 224 px with 1, 8 and 15 workers (synthetic 500x375 JPEGs)         40 s
#   5 GPU busy fraction of vit_ti4_cifar10 at batch 128 and 512 (torch.profiler)           25 s
#   6 attention kernels of ViT-B/16 and iGPT-S (host syncs per step: step 2, eager row)    20 s
#   7 time to accuracy: CIFAR-10 ViT for 2 minutes, test accuracy every 30 s                150 s
#   8 the other gpu-marked tests: bf16 default, no host sync under debug mode, FSDP iGPT
#     built on meta and compiled per block                                                  70 s
# Only what the GPU image can import runs: tests/gpu, never a bare tests/ (the sweep tests import optuna).
# First, here: bash bench/gpu_wheels.sh. Then: run(command="bash bench/gpu_check.sh", carry=[".whl", ".data"],
# timeout_s=560). Results land in $OUT (the device tool's folder), else bench/results/gpu-check/.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline PYTHONPATH=$PWD
SUMMARY="$OUT/steps.txt"
: > "$SUMMARY"

# Wheels one by one: a wheel that does not install is noted and the check goes on without it.
if compgen -G ".whl/*.whl" > /dev/null; then
  for wheel in .whl/*.whl; do
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$wheel" \
      >> "$OUT/wheels.log" 2>&1 || echo "wheel $(basename "$wheel") did not install" | tee -a "$SUMMARY"
  done
  export PYTHONPATH=$PWD:/tmp/site
fi
cifar=""
if [ -f .data/cifar10-jpeg/train.tar.gz ]; then
  mkdir -p /tmp/cifar10-jpeg
  tar -xzf .data/cifar10-jpeg/train.tar.gz -C /tmp/cifar10-jpeg && tar -xzf .data/cifar10-jpeg/test.tar.gz -C /tmp/cifar10-jpeg \
    && cifar=/tmp/cifar10-jpeg
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

failed=0
step() {  # step NAME SECONDS COMMAND...: run it under its own deadline, log it, record its exit
  local name=$1 limit=$2
  shift 2
  echo "=== $name (deadline ${limit} s) $(date -u +%T)"
  local started=$SECONDS
  timeout -k 5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.log"
  local verdict="ok"
  [ "$rc" = 0 ] || { verdict="exit $rc"; failed=1; }
  [ "$rc" = 124 ] && verdict="deadline ${limit} s reached"
  echo "$name: $verdict in $((SECONDS - started)) s" | tee -a "$SUMMARY"
}

step 1-fsdp 25 python3 -m pytest -m gpu -q -p no:cacheprovider tests/gpu -k fsdp_by_block
step 2-igpt 90 python3 bench/gpu.py --only igpt_s --modes eager,compile --max_minutes 1.4 \
  --out "$OUT/igpt.md" --out "$OUT/igpt.json"
step 3-resnet50 35 python3 bench/gpu_steps.py resnet50 --out "$OUT/steps.jsonl"
step 3-checkpoint 25 python3 bench/checkpoint_share.py --device cuda --batch_size 256 --repeats 2 \
  --out "$OUT/checkpoint.json"
step 4-loader 40 python3 bench/loader_224.py --workers 1,8,15 --images 192 --seconds 4 --batch_size 64 \
  --out "$OUT/loader.json"
step 5-busy 25 python3 bench/gpu_steps.py busy --out "$OUT/steps.jsonl"
step 6-kernels 20 python3 bench/gpu_steps.py attention --out "$OUT/steps.jsonl"
if [ -n "$cifar" ]; then
  step 7-tta 150 python3 bench/gpu_steps.py tta --data_dir "$cifar" --seconds 120 --out "$OUT/steps.jsonl"
else
  echo "7-tta: skipped, no .data/cifar10-jpeg (run bench/gpu_wheels.sh here and carry .data)" | tee -a "$SUMMARY"
fi
step 8-gpu-tests 70 python3 -m pytest -m gpu -q -p no:cacheprovider tests/gpu -k "not fsdp_by_block"
cat "$SUMMARY"
exit $failed
