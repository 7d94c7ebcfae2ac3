#!/usr/bin/env bash
# One-shot GPU check (optional; the project never needs a GPU). Run from the repo root on a CUDA machine
# with torch + torch_geometric + pandas/pyarrow/scikit-learn/matplotlib/tqdm installed:
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh
# 1) the default training run with --device cuda, 2) the predict CLI on that checkpoint with --device cuda,
# 3) the training benchmark on cuda and, for comparison on the same machine, on all CPU threads.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
PY=${PY:-python3}
{ nvidia-smi -L; nproc; $PY -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'pyg', g.__version__, 'cuda', torch.cuda.is_available())"; } 2>&1 | tee "$OUT/env.txt"
start=$(date +%s)
timeout 300 $PY -m gnn_market.train --device cuda --out /tmp/gpu_run 2>&1 | tee "$OUT/train_cuda.log"
echo "train wall_s=$(( $(date +%s) - start ))" | tee -a "$OUT/train_cuda.log"
cp /tmp/gpu_run/model.pt /tmp/gpu_run/metrics.json "$OUT/" 2>/dev/null
timeout 60 $PY -m gnn_market.predict --checkpoint /tmp/gpu_run/model.pt --device cuda --format csv 2>&1 | head -5 | tee "$OUT/predict_cuda.txt"
timeout 150 $PY benchmarks/bench_training.py --device cuda --results "$OUT/training_cuda.json" 2>&1 | tee "$OUT/bench.log"
timeout 150 $PY benchmarks/bench_training.py --device cpu --threads "$(nproc)" --results "$OUT/training_cpu_allthreads.json" 2>&1 | tee -a "$OUT/bench.log"
