#!/usr/bin/env bash
# Encode/decode time, peak memory and frames/s of the study's autoencoders on one GPU, with the released
# architectures and random weights (no downloads). Shapes: 17x256x256 and 17x576x1024, and 97x576x1024
# (SVD-XT's 25 latent frames decoded by CV-VAE); dtypes fp32, bf16 and fp16 (DTYPES overrides).
# Both CV-VAE releases (vae3d as `cvvae`, vae3d_sd3 as `cvvae_sd3`) run every case twice in the same process:
# through the plain path (impl=plain, the modules' own forward) and the default fast path (impl=fast).
#
#   PYTHON=/path/to/python OUT=/some/dir [DTYPES=bf16] [SHAPES=...] scripts/bench_gpu.sh
#
# PYTHON defaults to python3; the CSV goes to $OUT if set, else results/bench/. The CSV is rewritten after
# every case, so a run stopped by the time limit below still leaves the cases it finished.
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
DEST="${OUT:-results/bench}"
LIMIT_S="${BENCH_TIME_LIMIT_S:-900}"
DTYPES="${DTYPES:-fp32,bf16,fp16}"
SHAPES="${SHAPES:-17x256x256,17x576x1024,97x576x1024@bf16}"

# Per-frame models take 8 frames per call and the SVD decoder 8-frame chunks, so 97 frames at 576x1024 fit;
# CV-VAE runs as released (576-px spatial tiles, 17-frame temporal windows).
timeout --signal=INT "$LIMIT_S" "$PY" -m cvvae.cli bench \
  --random-weights \
  --baseline \
  --models \
    "cvvae" \
    "cvvae?variant=vae3d_sd3&name=cvvae_sd3" \
    "cvvae_image?frame_batch_size=8" \
    "image_vae?frame_batch_size=8" \
    "svd_vae?decode_chunk_size=8&frame_batch_size=8" \
    "uniform_sampling?frame_batch_size=8" \
  --shapes "$SHAPES" \
  --dtypes "$DTYPES" \
  --warmup 1 --repeats 3 --case-budget 15 \
  --out "$DEST"
