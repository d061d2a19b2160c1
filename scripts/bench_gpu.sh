#!/usr/bin/env bash
# Encode/decode time, peak memory and frames/s of the study's autoencoders on one GPU, with the released
# architectures and random weights (no downloads). Shapes: 17x256x256 and 17x576x1024 in fp32, bf16 and fp16,
# and 97x576x1024 (SVD-XT's 25 latent frames decoded by CV-VAE) in bf16.
#
#   PYTHON=/path/to/python OUT=/some/dir scripts/bench_gpu.sh
#
# PYTHON defaults to python3; the CSV goes to $OUT if set, else results/bench/. The CSV is rewritten after
# every case, so a run stopped by the time limit below still leaves the cases it finished.
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
DEST="${OUT:-results/bench}"
LIMIT_S="${BENCH_TIME_LIMIT_S:-470}"  # stay under 8 minutes on one H100

# Per-frame models take 8 frames per call and the SVD decoder 8-frame chunks, so 97 frames at 576x1024 fit;
# CV-VAE runs as released (576-px spatial tiles, 17-frame temporal windows).
timeout --signal=INT "$LIMIT_S" "$PY" -m cvvae.cli bench \
  --random-weights \
  --models \
    "cvvae" \
    "cvvae_image?frame_batch_size=8" \
    "image_vae?frame_batch_size=8" \
    "svd_vae?decode_chunk_size=8&frame_batch_size=8" \
    "uniform_sampling?frame_batch_size=8" \
  --shapes "17x256x256,17x576x1024,97x576x1024@bf16" \
  --dtypes fp32,bf16,fp16 \
  --warmup 1 --repeats 3 --case-budget 15 \
  --out "$DEST"
