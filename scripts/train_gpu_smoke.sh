#!/usr/bin/env bash
# Short bf16 training of the full-width CV-VAE (released architecture, random init) at 17x256x256 on synthetic
# clips: writes steps/s and peak GPU memory as JSON under $OUT (default: results/gpu_smoke). Needs no dataset,
# no LPIPS weights and no network. With 2+ GPUs it also runs two-process DDP through `accelerate launch`.
set -euo pipefail
OUT="${OUT:-results/gpu_smoke}"
STEPS="${STEPS:-20}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv || true

"$PY" -m cvvae.train.gpu_smoke --out "$OUT/1gpu" --steps "$STEPS" --frames 17 --resolution 256 --precision bf16

NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -ge 2 ]; then
    "$PY" -m accelerate.commands.launch --num_processes 2 --multi_gpu -m cvvae.train.gpu_smoke \
        --out "$OUT/2gpu" --steps "$STEPS" --frames 17 --resolution 256 --precision bf16
fi
find "$OUT" -name 'train_smoke_*.json' -exec cat {} \;
