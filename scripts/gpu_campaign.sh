#!/usr/bin/env bash
# One hold of the small-scale study of config/gpu.yaml on one GPU: data, the image VAE, the inflated CV-VAE,
# the CV-VAE runs named in RUNS (sharing the GPU), the latent diffusion model beside them, every evaluation of
# the profile's matrix whose model was trained here, then the generative-compatibility measurement.
#
# Run from an unpacked checkout under /tmp (the device lays its working tree anew around each call):
#   WORK=/tmp/c RUNS="none enc dec both" setsid nohup bash scripts/gpu_campaign.sh > /tmp/c/campaign.log 2>&1 &
# IMAGE_VAE_SHARDS=DIR restores the image VAE an earlier hold shipped (scripts/fp16_weights.py) instead of
# training it; LDM=0 skips the latent diffusion model; BENCH=0 the throughput measurement; SETUP=0 skips the
# data, image VAE and inflation steps, for a second call that trains more runs beside a first one, e.g.
#   SETUP=0 RUNS="none_seed1 enc_seed1" LDM=0 BENCH=0 bash scripts/gpu_campaign.sh
# TRAIN_SET="KEY=VALUE ..." adds `--set KEY=VALUE` to every CV-VAE run (a recipe pilot; each run's config.yaml
# records it), e.g. TRAIN_SET="cvvae.train.lr=1.0e-5 cvvae.train.reg.distance=l1". A run of the image VAE writes
# its fp16 shards to $WORK/ship; `pack` copies them into OUTDIR beside the archive. DATA_SET="KEY=VALUE ..." does
# the same for the embedded dataset's keys, e.g. DATA_SET="opencv_doc=require opencv_doc_dir=/tmp/c/opencv_doc".
# Stop a run with `pkill -f "^/.*python3 -m cvvae.cli train .*--variant NAME "` (a pattern that the calling shell's own
# command line does not match).
# The feature files (generative/features/*.safetensors, 16 MB each) come back one by one with
# `cp results/gpu/generative/features/NAME.safetensors $OUT/` from the checkout there.
# It waits for the LPIPS weights at $WORK/assets/lpips.ok and for the FID network at $WORK/assets/fid.ok (put
# there by later calls, as the files travel in parts). `bash scripts/gpu_campaign.sh pack OUTDIR` packs what is
# done so far (logs, tables, run metadata without weights) into OUTDIR/campaign.tar.gz.
set -uo pipefail
WORK=${WORK:-/tmp/c}
CONFIG=config/gpu.yaml
RES=results/gpu
RUN_ROOT=$RES/runs
LOGS=$RES/logs
GEN=$RES/generative
RUNS=${RUNS:-none enc dec both}
EVAL_JOBS=${EVAL_JOBS:-8}
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 PYTHONHASHSEED=0 TORCH_HOME=$WORK/torch
CV=(python3 -m cvvae.cli)

if [ "${1:-}" = pack ]; then
  out=${2:?pack needs an output folder}
  mkdir -p "$out"
  tar -czf "$out/campaign.tar.gz" --exclude='*.safetensors' --exclude='*.pt' --exclude='*.bin' \
    --exclude=checkpoints --exclude='*/final/*' --exclude='*/decoded/*' --exclude='*/reference/*' \
    --exclude='*/samples/*' --exclude=latents.safetensors \
    $(ls -d "$WORK/progress.log" "$LOGS" "$RES/eval" "$RUN_ROOT" "$RES/benchmarks" "$RES/bench" "$GEN" 2>/dev/null) \
    2>/dev/null
  [ -d "$WORK/ship" ] && cp "$WORK"/ship/* "$out"/
  exit 0
fi

mkdir -p "$LOGS" "$RES/benchmarks" "$GEN"
note() { echo "$(date +%T) $*" | tee -a "$WORK/progress.log"; }
wait_for() { while [ ! -f "$1" ]; do sleep 2; done; }
timed() {  # timed NAME command...: log to $LOGS/NAME.log, wall time to benchmarks/NAME.tsv
  local name=$1 start rc
  shift
  start=$(date +%s)
  "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  printf 's\trc\n%s\t%s\n' "$(($(date +%s) - start))" "$rc" > "$RES/benchmarks/$name.tsv"
  [ $rc -eq 0 ] || note "FAILED $name (rc $rc): $(tail -2 "$LOGS/$name.log" | tr '\n' ' ')"
  return $rc
}

note "start $(git rev-parse --short HEAD 2>/dev/null || cat REVISION 2>/dev/null); runs: $RUNS"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$WORK/progress.log"
if [ "${SETUP:-1}" = 1 ]; then
  data_set=()
  for kv in ${DATA_SET:-}; do data_set+=(--set "$kv"); done
  timed data "${CV[@]}" data embedded --config $CONFIG --out data/embedded/gpu "${data_set[@]}" || exit 1
  note "data done; waiting for the LPIPS weights"
  wait_for "$WORK/assets/lpips.ok"

  if [ -n "${IMAGE_VAE_SHARDS:-}" ]; then  # a later hold: the image VAE an earlier hold trained and shipped
    python3 scripts/fp16_weights.py restore "$IMAGE_VAE_SHARDS" --out $RUN_ROOT/image_vae/final || exit 1
    note "image VAE restored from $IMAGE_VAE_SHARDS"
  else
    timed image_vae "${CV[@]}" train-image-vae --config $CONFIG --out $RUN_ROOT/image_vae --if-changed restart || exit 1
    note "image VAE: $(tail -1 $RUN_ROOT/image_vae/val_metrics.csv)"
    # Every later run, here and in later holds, reads the fp16-rounded weights: the same bits travel both ways.
    python3 scripts/fp16_weights.py round $RUN_ROOT/image_vae/final --shards "$WORK/ship" || exit 1
  fi
  timed inflate "${CV[@]}" inflate --image-vae $RUN_ROOT/image_vae/final --out $RUN_ROOT/inflated/final \
    --set 'temporal_attention_init="zero"' || exit 1
else  # a second call in the same hold: data, image VAE and inflated model are already in $WORK
  note "setup skipped (SETUP=0): data, image VAE and inflated model of an earlier call"
fi
note "training: $RUNS$([ "${LDM:-1}" = 1 ] && echo " + ldm")"

util_log=$LOGS/gpu_util$([ "${SETUP:-1}" = 1 ] || echo _more).csv  # a second call keeps the first's
nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 1000 > "$util_log" &
util_pid=$!
train_set=()
for kv in ${TRAIN_SET:-}; do train_set+=(--set "$kv"); done
pids=()
for run in $RUNS; do
  OMP_NUM_THREADS=1 timed "train_$run" "${CV[@]}" train --config $CONFIG --variant "$run" --out "$RUN_ROOT/$run" \
    --if-changed restart "${train_set[@]}" &
  pids+=($!)
done
ldm_pid=
if [ "${LDM:-1}" = 1 ]; then
  OMP_NUM_THREADS=1 timed train_ldm "${CV[@]}" train-ldm --config $CONFIG --out "$GEN/ldm" --if-changed restart &
  ldm_pid=$!
fi
for pid in "${pids[@]}"; do wait "$pid"; done
note "CV-VAE runs done"

# Evaluations of the matrix whose model is the image VAE, the inflated model or a run trained here.
python3 - "$RUNS" > "$WORK/evals.txt" <<'EOF'
import shlex, sys
from cvvae.profile import load_profile, spec_run
profile = load_profile("config/gpu.yaml")
trained = set(sys.argv[1].split()) | {"image_vae", "inflated"}
models, args = profile["evaluate"]["models"], profile["evaluate"].get("args", {})
for protocol, names in profile["evaluate"]["matrix"].items():
    for name in names:
        spec = models[name].replace("{runs}", "results/gpu/runs")
        if spec_run(models[name]) in trained:
            extra = " ".join(shlex.quote(str(a)) for a in args.get(protocol, []))
            print(f"{protocol} {name} {shlex.quote(spec)} {extra}")
EOF
evaluate_one() {
  local protocol=$1 name=$2 spec=$3
  shift 3
  timed "evaluate_${protocol}_${name}" "${CV[@]}" evaluate --config $CONFIG --protocol "$protocol" --model "$spec" \
    --name "$name" --out "$RES/eval/$protocol/$name" --image-vae "image_vae:$RUN_ROOT/image_vae/final" \
    --device cuda --no-progress --if-changed restart "$@"
}
(  # at most EVAL_JOBS at once; each line is: protocol name spec args...
  while read -r line; do
    eval "set -- $line"
    while [ "$(jobs -rp | wc -l)" -ge "$EVAL_JOBS" ]; do sleep 1; done
    OMP_NUM_THREADS=2 evaluate_one "$@" &
  done < "$WORK/evals.txt"
  wait
) &
evals_pid=$!

if [ -n "$ldm_pid" ] && wait "$ldm_pid"; then
  note "LDM trained: $(tail -1 $GEN/ldm/metrics.csv 2>/dev/null)"
  timed ldm_sample python3 -m cvvae.ldm sample --config $CONFIG --out $GEN --model $GEN/ldm/final &&
    timed ldm_decode python3 -m cvvae.ldm decode --config $CONFIG --out $GEN &&
    { timed ldm_video python3 -m cvvae.ldm video --config $CONFIG --out $GEN || true; } &&  # may fail alone
    timed ldm_reference python3 -m cvvae.ldm reference --config $CONFIG --out $GEN
  note "LDM decoded; waiting for the FID network"
  wait_for "$WORK/assets/fid.ok"
  # Features and pairwise metrics here (they need the images and the GPU); the bootstrap of FID and KID is
  # CPU work for `python -m cvvae.ldm score --from-features` wherever the feature files land.
  timed ldm_features python3 -m cvvae.ldm features --config $CONFIG --out $GEN --reference-decoder image_vae
fi
wait "$evals_pid"
kill "$util_pid" 2>/dev/null
note "evaluations done"

# Training throughput, alone on the GPU (scripts/bench_train.py; the baseline is e369803's trainer in
# $WORK/baseline). Last, so that a short hold loses only this.
if [ "${BENCH:-1}" = 1 ] && [ -d "$WORK/baseline/cvvae" ]; then
  bench=(python3 scripts/bench_train.py --baseline "$WORK/baseline" --out "$RES/bench/train_throughput.csv")
  doubled='[{name: img128, kind: image, resolution: 128, batch_size: 16, weight: 0.4},
    {name: img256, kind: image, resolution: 160, batch_size: 4, weight: 0.1},
    {name: vid9, kind: video, num_frames: 9, stride: [1, 4], resolution: 128, batch_size: 2, weight: 0.25},
    {name: vid17, kind: video, num_frames: 17, stride: [1, 4], resolution: 96, batch_size: 2, weight: 0.25}]'
  mkdir -p "$RES/bench"
  timed bench_recipes "${bench[@]}" --recipes baseline current
  timed bench_image_b64 "${bench[@]}" --models image_vae --recipes current --set train.batch_size=64
  timed bench_cvvae_x2 "${bench[@]}" --models cvvae_dec --recipes current --set "train.mixture=$(echo $doubled)"
  timed bench_image_compile "${bench[@]}" --models image_vae --recipes current+train.compile=true
  # CUDA graphs: the CV-VAE step is bound by kernel launches (results/gpu/NOTES.md).
  timed bench_graphs "${bench[@]}" --recipes current+train.compile=true+train.compile_mode=reduce-overhead
  note "throughput measured"
fi
note "all done"
