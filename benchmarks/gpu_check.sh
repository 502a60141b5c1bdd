#!/usr/bin/env bash
# The first GPU run of ntre-zoo, in one command that ends within 7 minutes on one H100 (a loan's command may run
# 10; the loan is about 15 with the start). Each step has its own time limit (the LIMITS below add up to under
# 420 s; tests/test_gpu_check.py holds that), and a step that fails or times out is recorded and the next one
# runs: no `set -e`.
#   device      the GPU, torch and CUDA versions
#   tests       the CUDA tests, by node id
#   tf32        fp32 predict on the GPU against the CPU, with TF32 convolutions off and on
#   synthetic   a VOC-layout synthetic benchmark at PASCAL-like image sizes, generated here
#   train_w8    40 steps at the default precision (bf16 where native), batch 8, 8 workers: finite losses, rates
#   train_w0    the same 40 steps with 0 workers: is data loading the bottleneck?
#   train_b32   the paper batch of 32: peak GPU memory and its rate
#   evaluate    300 episodes, 1-shot, of the batch-8 weights
#   resume      a run started on the CPU, resumed on the GPU
#   inference   benchmarks/inference.py on the GPU
# Everything lands in one file, $OUT/summary.json (each step's status, seconds and numbers); logs/ keeps each
# step's output. docs/reproducing.md ("GPU time") says how its numbers become GPU-hours for the 20 variants.
#
#   bash benchmarks/gpu_check.sh                      # on the GPU machine, from the repository root
#   DEVICE=cpu SMOKE=1 bash benchmarks/gpu_check.sh   # the plumbing, end to end on a CPU, without time limits
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-gpu_check_out}
DEVICE=${DEVICE:-cuda}
SMOKE=${SMOKE:-0}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT/logs"
: > "$OUT/steps.tsv"

# Seconds per step (the sum stays under 420: tests/test_gpu_check.py).
declare -A LIMITS=(
  [device]=15 [tests]=45 [tf32]=35 [synthetic]=30 [train_w8]=55 [train_w0]=45 [train_b32]=50 [evaluate]=40
  [resume]=40 [inference]=50
)
if [ "$SMOKE" = 1 ]; then  # a CPU is some hundred times slower: the narrow model, small images, no time limits
  SIZE=160; CROP=65; TRAIN=24; VAL=12; STEPS=4; WARMUP=2; SMALL=2; LARGE=4; LARGE_STEPS=3; WORKERS=2
  EPISODES=8; TINY=(--tiny); ARCH=(--layers 1 1 1 1 --channels 8 16 32 64 --stem-width 8 --reduce-dim 16
  --pyramid-bins 8 4 2 --test-size 65); INFER=(--size 129 --queries 1 --repeats 1 --agreement-episodes 2 --no-bf16)
  TF32_SIZE=65; LIMIT=0
else
  SIZE=480; CROP=473; TRAIN=160; VAL=60; STEPS=40; WARMUP=10; SMALL=8; LARGE=32; LARGE_STEPS=15; WORKERS=8
  EPISODES=300; TINY=(); ARCH=(--layers 1 1 1 1 --channels 8 16 32 64 --stem-width 8 --reduce-dim 16
  --pyramid-bins 8 4 2 --test-size 65); INFER=(--size 473 --queries 4 --repeats 2 --agreement-episodes 20)
  TF32_SIZE=473; LIMIT=1
fi

# step NAME COMMAND...: run it under its limit, log its output, record status and milliseconds; never stops the
# script.
step() {
  local name=$1; shift
  local start end rc
  echo "== $name (limit ${LIMITS[$name]} s)"
  start=$(date +%s%N)
  if [ "$LIMIT" = 1 ]; then  # a watchdog ends the step's whole process group at its limit (functions included)
    set -m
    ( "$@" ) > "$OUT/logs/$name.log" 2>&1 &
    local pid=$!
    ( sleep "${LIMITS[$name]}"; touch "$WORK/$name.timeout"; kill -TERM -- "-$pid"; sleep 5; kill -KILL -- "-$pid"
    ) > /dev/null 2>&1 &
    local watchdog=$!
    wait "$pid"; rc=$?
    kill -- "-$watchdog" 2> /dev/null
    set +m
    [ -e "$WORK/$name.timeout" ] && rc=124
  else
    "$@" > "$OUT/logs/$name.log" 2>&1; rc=$?
  fi
  end=$(date +%s%N)
  tail -n 3 "$OUT/logs/$name.log"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( (end - start) / 1000000 ))" >> "$OUT/steps.tsv"
}

device_info() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || echo "no nvidia-smi"
  python -c "import json, torch, ntre_zoo; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, \
'available': torch.cuda.is_available(), 'devices': [torch.cuda.get_device_name(i) for i in \
range(torch.cuda.device_count())], 'capability': [torch.cuda.get_device_capability(i) for i in \
range(torch.cuda.device_count())], 'ntre_zoo': ntre_zoo.__version__}))" | tee "$WORK/device.json"
}

tf32_check() {  # fp32 on DEVICE against the CPU, TF32 convolutions off then on (matmuls stay fp32: torch's default)
  python - "$DEVICE" "$TF32_SIZE" "${#TINY[@]}" <<'EOF' | tee "$WORK/tf32.json"
import json, sys
import torch
import ntre_zoo
device, size, tiny = sys.argv[1], int(sys.argv[2]), sys.argv[3] != "0"
narrow = {"layers": (1, 1, 1, 1), "channels": (8, 16, 32, 64), "stem_width": 8, "reduce_dim": 16} if tiny else {}
torch.manual_seed(0)
model = ntre_zoo.create_model("resnet50", test_size=size, **narrow).eval()
g = torch.Generator().manual_seed(0)
query, support = torch.randn(2, 3, size, size, generator=g), torch.randn(2, 1, 3, size, size, generator=g)
masks = torch.zeros(2, 1, size, size, dtype=torch.long)
masks[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
with torch.no_grad():
    cpu = model(query, support, masks).logits.softmax(1)[:, 1]
    result = {"size": size}
    model.to(device)
    for tf32 in (False, True):
        torch.backends.cudnn.allow_tf32 = tf32
        got = model(query.to(device), support.to(device), masks.to(device)).logits.softmax(1)[:, 1].cpu()
        key = "tf32_on" if tf32 else "tf32_off"
        result[key] = {"max_abs_probability": float((got - cpu).abs().max()),
                       "mask_agreement": float(((got > 0.5) == (cpu > 0.5)).float().mean())}
print(json.dumps(result))
EOF
}

resume_check() {  # a run started on the CPU continues on DEVICE (an empty scaler state, the CPU's RNG states)
  local common=(--dataset pascal5i --data-root "$ROOT" --epochs 1 --batch-size 2 --val-every 0 --no-progress)
  python -m ntre_zoo train "${common[@]}" "${ARCH[@]}" --backbone-weights none --max-steps 2 --device cpu \
    -o "$WORK/resume" && python -m ntre_zoo train --resume "$WORK/resume" --max-steps 4 --device "$DEVICE" \
    --no-progress && python -c "import json, sys, torch; s = torch.load(sys.argv[1], weights_only=True); \
print(json.dumps({'steps': s['step'], 'scaler': sorted(s['scaler'])}))" "$WORK/resume/checkpoints/last.pt" \
    | tee "$WORK/resume.json"
}

evaluate_timed() {
  python -m ntre_zoo evaluate "$WORK/model" --dataset pascal5i --data-root "$ROOT" --fold 0 --shot 1 \
    --episodes "$EPISODES" --device "$DEVICE" --batch-size "$SMALL" --workers "$WORKERS" --no-progress \
    --output "$WORK/evaluate.json"
}

ROOT="$WORK/syn/VOCdevkit/VOC2012"
TRAINING=(python benchmarks/training.py --data-root "$ROOT" --backbone resnet50 --crop-size "$CROP" --device "$DEVICE"
  "${TINY[@]}")
step device device_info
step tests python -m pytest -q -rs -p no:cacheprovider tests/test_predict.py::test_cuda_matches_cpu \
  tests/test_model.py::test_cuda_prior_equals_the_cpu_prior
step tf32 tf32_check
step synthetic python -m ntre_zoo make-synthetic -o "$WORK/syn" --train "$TRAIN" --val "$VAL" --size "$SIZE" --no-progress
step train_w8 "${TRAINING[@]}" --batch-size "$SMALL" --steps "$STEPS" --warmup "$WARMUP" --workers "$WORKERS" \
  --save "$WORK/model" --json "$WORK/train_w8.json"
step train_w0 "${TRAINING[@]}" --batch-size "$SMALL" --steps "$STEPS" --warmup "$WARMUP" --workers 0 \
  --json "$WORK/train_w0.json"
step train_b32 "${TRAINING[@]}" --batch-size "$LARGE" --steps "$LARGE_STEPS" --warmup "$WARMUP" \
  --workers "$WORKERS" --json "$WORK/train_b32.json"
step evaluate evaluate_timed
step resume resume_check
step inference python benchmarks/inference.py --backbone resnet50 "${INFER[@]}" --shots 1 --device "$DEVICE" \
  --json "$WORK/inference.json"

python - "$OUT" "$WORK" "$SMOKE" <<'EOF'
import json, sys
from pathlib import Path
out, work, smoke = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
summary = {"smoke": smoke, "steps": {}}
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, seconds = line.split("\t")
    status = "ok" if rc == "0" else ("timed out" if rc in ("124", "137") else f"failed (exit {rc})")
    record = {"status": status, "seconds": round(int(seconds) / 1000, 1)}
    result = work / f"{name}.json"
    if result.is_file():
        text = result.read_text().strip()
        try:
            record["result"] = json.loads(text)
        except json.JSONDecodeError:
            record["result"] = json.loads(text.splitlines()[-1])
    summary["steps"][name] = record
summary["total_seconds"] = round(sum(r["seconds"] for r in summary["steps"].values()), 1)
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
failed = [n for n, r in summary["steps"].items() if r["status"] != "ok"]
print(f"summary: {out / 'summary.json'} ({summary['total_seconds']} s; failed: {', '.join(failed) or 'none'})")
EOF
rm -f "$OUT/steps.tsv"
