#!/usr/bin/env bash
# One prepared GPU session (docs/performance.md), about 10 minutes on one H100-class GPU:
#   1. the environment (nvidia-smi, textscd env);
#   2. `textscd bench` for Baseline and TextSCD at 512², batch 8: eager with the fast path, eager with the old
#      switches (--host-syncs --mask-once off --cudnn-benchmark off), the narrow decoder tail, CUDA graphs,
#      and the measured time per model part (--parts);
#   3. a SECOND-sized mini-SECOND at 512² (2,968 pairs: SECOND's labelled 2,375 train / 593 val);
#   4. chapters 05-07 on it (05 trains Baseline and TextSCD end to end; 06 scores them; 07 the caption ablation).
# Everything lands in results/gpu/<device>/ (and the bench lines also in results/benchmarks/<device>.jsonl);
# checkpoints, caches and predictions stay out of git (a .gitignore there) and out of the archive.
#
# Usage on the GPU machine:   bash tools/gpu_check.sh
# Check on a CPU, tiny sizes: GPU_CHECK_TINY=1 nice -n 10 bash tools/gpu_check.sh
#   (64², 24 pairs, one epoch, the notebooks in FAST mode, everything under /tmp/gpu_check_tiny, no benchmark
#   lines appended; the CUDA-only parts -- CUDA graphs, cudnn -- are skipped with a line saying so). Knobs: GPU_PAIRS, GPU_EPOCHS, GPU_SIZE, GPU_BATCH, GPU_REPEATS,
#   GPU_RETRAIN (chapter 07's retraining per caption source; default false), PY.
set -uo pipefail
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1 TQDM_MININTERVAL=5
log() { echo "[$(date +%T)] $*"; }
CUDA=$($PY -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [ "${GPU_CHECK_TINY:-0}" = 1 ]; then
  SIZE=${GPU_SIZE:-64}; PAIRS=${GPU_PAIRS:-24}; EPOCHS=${GPU_EPOCHS:-1}; BATCH=${GPU_BATCH:-2}
  REPEATS=${GPU_REPEATS:-1}; WARMUP=1; FASTFLAG=--fast; MODE=tiny; NOWRITE=--no-write
else
  SIZE=${GPU_SIZE:-512}; PAIRS=${GPU_PAIRS:-2968}; EPOCHS=${GPU_EPOCHS:-5}; BATCH=${GPU_BATCH:-8}
  REPEATS=${GPU_REPEATS:-15}; WARMUP=5; FASTFLAG=; MODE=full; NOWRITE=
fi
if [ "$CUDA" = 1 ]; then DEVICE=cuda; else DEVICE=cpu; fi
if [ "$MODE" = full ] && [ "$CUDA" != 1 ]; then
  echo "gpu_check: no CUDA device here; the full check needs one (GPU_CHECK_TINY=1 checks the script on a CPU)" >&2
  exit 2
fi
SLUG=$($PY -c "
import torch, re
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'
print(re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-').lower() + ('-tiny' if '$MODE' == 'tiny' else ''))")
# results/gpu/<device>/ (the tiny CPU check writes to /tmp unless GPU_RESULTS says otherwise)
if [ "$MODE" = tiny ]; then export TEXTSCD_RESULTS=${GPU_RESULTS:-/tmp/gpu_check_tiny}
else export TEXTSCD_RESULTS=${GPU_RESULTS:-$PWD/results/gpu}; fi
OUT=$TEXTSCD_RESULTS/$SLUG; mkdir -p "$OUT"
printf 'checkpoints/\ncache/\npredictions/\n' > "$OUT/.gitignore"  # big files stay out of git
BENCH="$PY -m textscd_lib bench --device $DEVICE --size $SIZE --batch $BATCH --warmup $WARMUP --repeats $REPEATS $NOWRITE"
log "start: mode $MODE, device $DEVICE ($SLUG), ${SIZE}², batch $BATCH, $PAIRS pairs, $EPOCHS epoch(s) -> $OUT"

log environment
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi.csv"
else
  echo "no nvidia-smi on this machine: skipped"
fi
$PY -m textscd_lib env --json > "$OUT/env.json" 2>&1; tail -c 600 "$OUT/env.json"; echo

log "bench: eager, the fast path (defaults)"
$BENCH --pipeline 2>&1 | grep '^{' | tee "$OUT/bench_fast.jsonl"
log "bench: eager, the old switches (host syncs, mask per TGI level, no cudnn.benchmark)"
$BENCH --pipeline --host-syncs --mask-once off --cudnn-benchmark off 2>&1 | grep '^{' | tee "$OUT/bench_old.jsonl"
log "bench: narrow decoder tail, L_sim fast cosine"
$BENCH --tail narrow --fast-cosine 2>&1 | grep '^{' | tee "$OUT/bench_narrow.jsonl"
if [ "$CUDA" = 1 ]; then
  log "bench: CUDA graphs (separate call: a capture failure must not cost the eager numbers)"
  $BENCH --cuda-graphs 2>&1 | tail -c 3000 | tee "$OUT/bench_cuda_graphs.jsonl"
else
  log "bench: CUDA graphs skipped (no CUDA device; textscd bench --cuda-graphs refuses on a CPU)"
fi
log "bench --parts: measured time per model part"
$BENCH --parts > "$OUT/bench_parts.jsonl" 2> "$OUT/bench_parts.txt"; grep -v INFO "$OUT/bench_parts.txt" | tail -30

log "synth: mini-SECOND, $PAIRS pairs at ${SIZE}²"
if [ "$MODE" = tiny ]; then DATA=$TEXTSCD_RESULTS/data/mini-second-$SIZE-$PAIRS; else DATA=$PWD/data/mini-second-$SIZE-$PAIRS; fi
$PY -m textscd_lib data synth --out "$DATA" --pairs "$PAIRS" --size "$SIZE" --seed 0 --workers 0 || exit 1
# chapter 07 retrains TextSCD per caption source on CUDA by default: off here to stay within ~10 minutes
printf 'DATA_ROOT: %s\nTEXT_ENCODER: auto\nDEVICE: %s\nEPOCHS: %s\nSIZE: %s\nRETRAIN: %s\n' "$DATA" "$DEVICE" "$EPOCHS" \
  "$SIZE" "${GPU_RETRAIN:-false}" \
  > "$OUT/params.yaml"
log "chapters 05-07 on run $SLUG (05 trains Baseline and TextSCD end to end)"
# shellcheck disable=SC2086
$PY -m textscd_lib run $FASTFLAG --run-name "$SLUG" --only 05,06,07 --params "$OUT/params.yaml" 2>&1 \
  | grep -v "^\[IPKernelApp\]" | tail -25 | tee "$OUT/run.txt"
status=${PIPESTATUS[0]}
log "pack (checkpoints, caches and predictions stay out of the archive)"
tar --exclude="$SLUG/checkpoints" --exclude="$SLUG/cache" --exclude="$SLUG/predictions" \
  -czf "$TEXTSCD_RESULTS/$SLUG.tgz" -C "$TEXTSCD_RESULTS" "$SLUG"
ls -la "$OUT"; log "done (notebooks exit status $status)"
exit "$status"
