#!/usr/bin/env bash
# On one GPU: a short recipe pilot (embedded data, a briefly trained image VAE, four CV-VAE `dec` recipes
# sharing the GPU, validation PSNR from step 0), then the training-throughput benchmark on synthetic clips
# and on the embedded data (recipes baseline and current, scripts/bench_train.py; the baseline folder holds
# e369803's cvvae/ and config/). Everything lands in $OUT as it is made, so a cut-off run keeps what it did.
#   OUT=/tmp/out bash scripts/gpu_train_pilot.sh [pilot_steps] [bench: none|embedded|all]
set -uo pipefail
OUT=${OUT:-/tmp/out}
STEPS=${1:-300}
BENCH=${2:-all}
WORK=/tmp/pilot
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | awk '{print tolower($NF)}')
torch=$(python3 -c "import torch; print('.'.join(torch.__version__.split('+')[0].split('.')[:2]))")
bench="$OUT/train_throughput_${gpu}_${torch}.csv"

echo "== data"
python3 -m cvvae.cli data embedded --config config/gpu.yaml --out "$WORK/data" > "$WORK/data.log" 2>&1 || tail -5 "$WORK/data.log"

echo "== image VAE ($((STEPS + 60)) steps, LPIPS and GAN off)"
python3 -m cvvae.cli train-image-vae --config config/gpu.yaml --out "$WORK/image_vae" \
  --set data.root="$WORK/data" --set image_vae.train.steps=$((STEPS + 60)) \
  --set image_vae.train.loss.lpips=none --set image_vae.train.loss.disc_enabled=false \
  --set image_vae.train.val_every=$((STEPS + 60)) > "$WORK/image_vae.log" 2>&1 || tail -5 "$WORK/image_vae.log"
cp "$WORK/image_vae/val_metrics.csv" "$OUT/pilot_image_vae_val.csv"

echo "== CV-VAE recipes ($STEPS steps each, sharing the GPU)"
common=(--set data.root="$WORK/data" --set cvvae.image_vae_path="$WORK/image_vae/final"
        --set cvvae.train.loss.lpips=none --set cvvae.train.steps=$STEPS --set cvvae.train.val_every=$((STEPS / 3)))
declare -A recipes=(
  [committed]="--set cvvae.model.temporal_attention_init=linearised --set cvvae.train.loss.disc_start=1 --set cvvae.train.loss.disc_schedule=alternate"
  [zero]=""
  [zero_official_adam]="--set cvvae.train.eps=1e-4 --set cvvae.train.betas=[0.9,0.98]"
  [linearised_own_lr]="--set cvvae.model.temporal_attention_init=linearised --set cvvae.train.linearised_lr_scale=1e-4"
)
pids=()
for name in "${!recipes[@]}"; do
  # shellcheck disable=SC2086
  python3 -m cvvae.cli train --config config/gpu.yaml --variant dec --out "$WORK/$name" "${common[@]}" \
    ${recipes[$name]} > "$WORK/$name.log" 2>&1 &
  pids+=($!)
done
copy() { for name in "${!recipes[@]}"; do cp "$WORK/$name/val_metrics.csv" "$OUT/pilot_${name}_val.csv" 2>/dev/null; done; }
while [ -n "$(jobs -rp)" ]; do copy; sleep 5; done  # partial histories survive a cut-off
wait
copy
for name in "${!recipes[@]}"; do echo "-- $name"; tail -1 "$WORK/$name.log"; cat "$WORK/$name/val_metrics.csv"; done

if [ "$BENCH" = all ]; then
  echo "== throughput on synthetic clips ($gpu, torch $torch)"
  python3 scripts/bench_train.py --baseline .baseline --out "$bench" --recipes baseline current
fi
if [ "$BENCH" != none ]; then
  echo "== throughput on the embedded data ($gpu, torch $torch)"
  python3 scripts/bench_train.py --baseline .baseline --out "$bench" --recipes baseline current \
    --data "$WORK/data" --warmup 25 --steps 50
fi
