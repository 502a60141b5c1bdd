#!/usr/bin/env bash
# The first GPU run of ntre-zoo (issue 11, item 6), in one go and under ten minutes on one recent GPU:
#   1. the device, torch and CUDA versions;
#   2. the CUDA test subset (tests that skip without CUDA);
#   3. benchmarks/inference.py --device cuda (fp32/bf16/fp16, channels_last, batch 1 and batched);
#   4. a synthetic benchmark in the VOC layout at PASCAL-like image sizes, generated here;
#   5. ResNet-50 training at 473 with bf16 autocast: STEPS steps at batch 8 and 100 at batch 32 (the paper
#      preset's), timed step by step, with peak GPU memory;
#   6. a 1000-episode 1-shot evaluation (bf16, batch 8) of the batch-8 weights, timed.
# Every number lands in $OUT (default ./gpu_check_out): device.txt, tests.txt, inference.json, training_b8.json,
# training_b32.json, evaluate.json, timings.txt. docs/reproducing.md says how they turn into GPU-hours.
#
#   bash benchmarks/gpu_check.sh                          # on the GPU machine, from the repository root
#   DEVICE=cpu STEPS=6 EPISODES=20 SMOKE=1 bash benchmarks/gpu_check.sh   # the plumbing, on a CPU, in minutes
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-gpu_check_out}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-300}
EPISODES=${EPISODES:-1000}
SMOKE=${SMOKE:-0}  # 1: small images and models, for checking this script on a CPU
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
: > "$OUT/timings.txt"
stamp() { echo "$(date -u +%FT%TZ) $*" | tee -a "$OUT/timings.txt"; }
if [ "$SMOKE" = 1 ]; then  # a CPU is some hundred times slower: small batches, no time limits
  SIZE=200; CROP=129; TRAIN=60; VAL=30; LARGE_STEPS=4; WARMUP=2; SMALL=2; LARGE=4; WORKERS=2; LIMIT=0
  INFER="--size 129 --queries 2 --repeats 1"
else
  SIZE=480; CROP=473; TRAIN=400; VAL=200; LARGE_STEPS=100; WARMUP=20; SMALL=8; LARGE=32; WORKERS=8; LIMIT=1
  INFER="--size 473 --queries 8"
fi
limit() { if [ "$LIMIT" = 1 ]; then timeout "$@"; else shift; "$@"; fi; }  # limit SECONDS COMMAND...

stamp "1. device"
{
  nvidia-smi || echo "no nvidia-smi"
  python -c "import torch, ntre_zoo; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), 'devices', [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], 'ntre_zoo', ntre_zoo.__version__)"
} > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

stamp "2. CUDA tests"
limit 300 python -m pytest -q -rs -k "cuda" tests 2>&1 | tee "$OUT/tests.txt" || echo "CUDA tests failed (see tests.txt)" | tee -a "$OUT/timings.txt"

stamp "3. inference benchmark"
# shellcheck disable=SC2086
limit 240 python benchmarks/inference.py --backbone resnet50 $INFER --shots 1 --device "$DEVICE" --json "$OUT/inference.json" \
  || echo "inference benchmark failed" | tee -a "$OUT/timings.txt"

stamp "4. synthetic benchmark ($TRAIN train / $VAL val images, long side $SIZE)"
python -m ntre_zoo make-synthetic "$WORK/syn" --train "$TRAIN" --val "$VAL" --size "$SIZE" --no-progress
ROOT="$WORK/syn/VOCdevkit/VOC2012"

stamp "5. training: $STEPS steps at batch $SMALL, then $LARGE_STEPS at batch $LARGE (bf16, crop $CROP)"
limit 300 python benchmarks/training.py --data-root "$ROOT" --backbone resnet50 --crop-size "$CROP" --batch-size "$SMALL" \
  --steps "$STEPS" --warmup "$WARMUP" --amp-dtype bfloat16 --device "$DEVICE" --workers "$WORKERS" --save "$WORK/model" \
  --json "$OUT/training_b$SMALL.json"
limit 240 python benchmarks/training.py --data-root "$ROOT" --backbone resnet50 --crop-size "$CROP" --batch-size "$LARGE" \
  --steps "$LARGE_STEPS" --warmup "$WARMUP" --amp-dtype bfloat16 --device "$DEVICE" --workers "$WORKERS" \
  --json "$OUT/training_b$LARGE.json" || echo "batch-$LARGE training failed (memory?)" | tee -a "$OUT/timings.txt"

stamp "6. evaluation: $EPISODES episodes, 1-shot, bf16, batch $SMALL"
AMP=(--amp bf16)
[ "$DEVICE" = cpu ] && AMP=()
start=$(date +%s.%N)
limit 300 python -m ntre_zoo evaluate "$WORK/model" --dataset pascal5i --data-root "$ROOT" --fold 0 --shot 1 \
  --episodes "$EPISODES" --device "$DEVICE" "${AMP[@]}" --batch-size "$SMALL" --workers "$WORKERS" --no-progress \
  --output "$OUT/evaluate.json"
end=$(date +%s.%N)
python - "$OUT/evaluate.json" "$start" "$end" "$EPISODES" <<'EOF'
import json, sys
path, start, end, episodes = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
result = json.load(open(path))
result["wall_s_with_startup"] = end - start
result["episodes_per_s_with_startup"] = episodes / (end - start)
json.dump(result, open(path, "w"), indent=2)
print(f"evaluation: {episodes} episodes in {end - start:.1f} s ({episodes / (end - start):.1f} episodes/s, process start and data indexing included)")
EOF
stamp "done; results in $OUT"
