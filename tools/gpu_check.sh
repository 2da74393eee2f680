#!/usr/bin/env bash
# One prepared GPU session (device tool): environment, benchmark at 512², and an executed GPU run of
# notebook 05 on a 512² mini-SECOND. Usage there: bash tools/gpu_check.sh  (OUT=<folder for the results>)
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1 TQDM_MININTERVAL=5
log() { echo "[$(date +%T)] $*"; }
log start; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi.csv"
python3 -m textscd_lib env --json > "$OUT/env.json" 2>&1; tail -c 600 "$OUT/env.json"
log bench
python3 -m textscd_lib bench --device cuda --size 512 --batch 8 --warmup 5 --repeats 15 2>&1 | grep '^{' | tee "$OUT/bench_512_b8_bf16.jsonl"
log bench-parts  # measured kernel time per model part, with the H100's roofline bound per part and how busy the GPU was
python3 -m textscd_lib bench --device cuda --size 512 --batch 8 --warmup 5 --repeats 15 --parts > "$OUT/bench_512_b8_parts.jsonl" 2> "$OUT/bench_512_b8_parts.txt"; grep -v INFO "$OUT/bench_512_b8_parts.txt" | tail -30
log bench-cuda-graphs  # separate call: a capture failure must not cost the eager numbers above
python3 -m textscd_lib bench --device cuda --size 512 --batch 8 --warmup 5 --repeats 15 --cuda-graphs 2>&1 | tail -c 3000 | tee "$OUT/bench_512_b8_bf16_cuda_graphs.jsonl"
log synth
python3 -m textscd_lib data synth --out data/mini-second-512 --pairs ${GPU_PAIRS:-640} --size 512 --seed 0 --workers 16
printf 'DATA_ROOT: data/mini-second-512\nTEXT_ENCODER: clip-random\nDEVICE: cuda\nEPOCHS: %s\nSIZE: 512\n' "${GPU_EPOCHS:-5}" > /tmp/gpu.yaml
log notebook05
python3 -m textscd_lib run --run-name gpu --only 05 --params /tmp/gpu.yaml 2>&1 | grep -v "^\[IPKernelApp\]" | tail -20
log pack
tar --exclude='results/gpu/checkpoints' --exclude='results/gpu/cache' --exclude='results/gpu/predictions' -czf "$OUT/results_gpu.tgz" results/gpu
ls -la "$OUT"; log done
