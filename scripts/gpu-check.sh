#!/usr/bin/env bash
# One-command GPU check (issue 10): on a machine with one CUDA GPU, in <= 8 minutes on an H100, writes
#   $OUT/gpu-check.json      env, benchmark-speed variants, paper + gpu-fast trainings (metrics, peak memory; gpu-fast
#                            also at sample.init_t 0.5-0.8 and 2x wide), patch
#   $OUT/sheets/<cfg>.png    training image + 4 samples of each trained configuration
#   $OUT/gpu-check.log       everything the parts printed
# OUT defaults to ./gpu-check-out. Every part runs in its own process under `timeout` and writes its JSON as it
# goes, so a part that hangs or fails leaves the others' numbers (and its own partial ones) in the JSON.
#
# Usage:
#   scripts/gpu-check.sh [IMAGE]              IMAGE: one Places50 image (default: $GPU_CHECK_IMAGE, else the
#                                             first image in .gpu-data/ -- copy it there yourself, never commit it)
#   scripts/gpu-check.sh --cpu-smoke [IMAGE]  everything with a tiny model on the CPU in < 60 s (tests use this)
# Environment: OUT, PYTHON (default: the first of python3, python that imports torch), GPU_CHECK_TRAIN_MINUTES (default 2.5 per configuration:
#   measured on an H200, env 4 s + speed 81 s + paper 206 s at 3 min, so 3 min each would end at ~8.3 min),
#   GPU_CHECK_WHEELS (a folder of wheels to install missing dependencies from, offline); a folder .gpu-pylib/
#   of pure-Python packages (yaml, tqdm) is used for modules the interpreter lacks.
# Exit: 0 all parts ok or skipped; 1 a part failed or timed out (see the JSON); 2 bad usage / no image /
#   missing Python dependencies; 3 no CUDA device (without --cpu-smoke). Errors are one line on stderr.

set -u -o pipefail

die() { echo "gpu-check: $1" >&2; exit "${2:-2}"; }

CPU_SMOKE=0
IMAGE="${GPU_CHECK_IMAGE:-}"
for arg in "$@"; do
  case "$arg" in
    --cpu-smoke) CPU_SMOKE=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) die "unknown option $arg (use --cpu-smoke or --help)" ;;
    *) IMAGE="$arg" ;;
  esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-./gpu-check-out}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then  # the first interpreter that has torch
  for c in python3 python; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import torch" >/dev/null 2>&1; then PY="$c"; break; fi
  done
fi
[ -n "$PY" ] && command -v "$PY" >/dev/null 2>&1 || die "no python interpreter with torch found (set PYTHON)"
command -v timeout >/dev/null 2>&1 || die "the 'timeout' command (coreutils) is required"

if [ -z "$IMAGE" ]; then
  IMAGE="$(ls "$REPO"/.gpu-data/*.jpg "$REPO"/.gpu-data/*.png "$REPO"/.gpu-data/*.jpeg 2>/dev/null | head -n 1)"
fi
[ -n "$IMAGE" ] && [ -f "$IMAGE" ] || die "no training image: pass its path, set GPU_CHECK_IMAGE, or copy one Places50 image into $REPO/.gpu-data/"
IMAGE="$(cd "$(dirname "$IMAGE")" && pwd)/$(basename "$IMAGE")"

# --- Python environment: the checkout's sources first; no MLflow; dependencies checked, installed if missing.
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
export SINDIFFUSION_TRACKING=off
MODULES="torch numpy PIL yaml tqdm"  # what the parts import (matplotlib/mlflow/... are not needed here)
missing() { "$PY" -c "
import importlib.util, sys
names = {'PIL': 'pillow', 'yaml': 'pyyaml'}
print(' '.join(names.get(m, m) for m in sys.argv[1:] if importlib.util.find_spec(m) is None))" $MODULES; }
MISSING="$(missing)"
if [ -n "$MISSING" ] && [ -d "$REPO/.gpu-pylib" ]; then  # pure-Python fallbacks (yaml, tqdm) copied in by the caller
  export PYTHONPATH="$PYTHONPATH:$REPO/.gpu-pylib"
  MISSING="$(missing)"
fi
if [ -n "$MISSING" ]; then
  echo "gpu-check: installing missing Python packages: $MISSING" >&2
  if [ -n "${GPU_CHECK_WHEELS:-}" ]; then
    timeout 180 "$PY" -m pip install -q --no-index --find-links "$GPU_CHECK_WHEELS" $MISSING >&2
  else
    timeout 180 "$PY" -m pip install -q $MISSING >&2
  fi
  MISSING="$(missing)"
  [ -z "$MISSING" ] || die "missing Python packages: $MISSING (pip install failed; offline? set GPU_CHECK_WHEELS)"
fi

# --- CUDA (unless the CPU smoke run was asked for)
if [ "$CPU_SMOKE" = 0 ]; then
  "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
    || die "no CUDA device (torch.cuda.is_available() is False); use --cpu-smoke for the CPU test run" 3
fi

mkdir -p "$OUT" || die "cannot create $OUT"
OUT="$(cd "$OUT" && pwd)"
rm -rf "$OUT/parts" "$OUT/runs" "$OUT/sheets" "$OUT/gpu-check.json"
LOG="$OUT/gpu-check.log"
: > "$LOG"
T_START=$(date +%s)
FAILED=0
GC=("$PY" -m sindiffusion.cli.gpu_check)

# run_part NAME LIMIT_SECONDS [--raw-json FILE] -- COMMAND...: run under timeout, record status + wall time, merge.
run_part() {
  local name="$1" limit="$2"; shift 2
  local raw=()
  if [ "$1" = "--raw-json" ]; then raw=(--raw-json "$2"); shift 2; fi
  shift  # --
  echo "=== $name (limit ${limit}s): $*" >> "$LOG"
  local t0=$(date +%s)
  ( cd "$REPO" && timeout --kill-after=15 "$limit" "$@" ) >> "$LOG" 2>&1
  local rc=$?
  local status
  status="$("${GC[@]}" mark "$OUT" "$name" "$rc" "$(( $(date +%s) - t0 ))" ${raw[@]+"${raw[@]}"} 2>>"$LOG")" || status="unrecorded"
  "${GC[@]}" merge "$OUT" 2>>"$LOG"
  case "$status" in ok|skipped) ;; *) FAILED=1 ;; esac
  echo "gpu-check: $name: $status ($(( $(date +%s) - t0 )) s, total $(( $(date +%s) - T_START )) s)" >&2
}

if [ "$CPU_SMOKE" = 1 ]; then
  export OMP_NUM_THREADS=1  # tiny convolutions: extra threads only spin-wait (much slower on a busy CPU)
  MINUTES=0.05
  # TINY: every part (a small image, short runs, the CPU); TINY_UNET: the UNet parts only (the patch part's
  # model section is another kind, whose keys these are not)
  TINY=(--set preprocess.max_size=32
        --set train.batch_size=2 --set train.crop_size=null --set train.device=cpu --set train.precision=fp32
        --set train.log_every=1 --set sample.sampler=ddim --set sample.steps=3 --set sample.device=cpu
        --set sample.precision=fp32 --set evaluate.device=cpu)
  TINY_UNET=("${TINY[@]}" --set model.preset=custom --set model.base_channels=8 --set "model.channel_mult=[1,2]"
        --set model.encoder_blocks=1 --set model.decoder_blocks=2 --set model.groups=4)
  SPEED=(--params configs/paper.yaml "${TINY_UNET[@]}" --height 32 --width 32 --train-batch 2 --sample-batches 1
         --iters 1 --device cpu --variant fp32,off,off --variant bf16,on,off)
  L_SPEED=60; L_TRAIN=60; L_PATCH=60
else
  MINUTES="${GPU_CHECK_TRAIN_MINUTES:-2.5}"
  TINY=()
  TINY_UNET=()
  SPEED=(--preset paper --iters 5 --sample-batches 1 8 --variant bf16,on,off --variant bf16,off,off
         --variant fp32,on,off --variant bf16,on,on)
  L_SPEED=150; L_PATCH=120
  L_TRAIN=$("$PY" -c "print(int($MINUTES * 60 + 120))")
fi

run_part env 60 -- "${GC[@]}" env "$OUT" $([ "$CPU_SMOKE" = 1 ] && echo --cpu-smoke)
run_part speed "$L_SPEED" --raw-json "$OUT/speed.raw.json" -- \
  "$PY" -m sindiffusion benchmark-speed "${SPEED[@]}" --json "$OUT/speed.raw.json"
# gpu-fast is also sampled at several sample.init_t (the diversity knob: a GPU-trained model copies more
# at the same value than a CPU-trained one; docs/gpu-check.md), ~1 s each on an H100, and 2x wide (its
# sample.init: auto -> the tile start: are the structures of the image's size?)
for cfg in paper gpu-fast; do
  SWEEP=()
  [ "$cfg" = gpu-fast ] && SWEEP=(--sweep "sample.init_t=0.5,0.6,0.7,0.8" --sweep "sample.scale_w=2")
  run_part "$cfg" "$L_TRAIN" -- "${GC[@]}" config "$OUT" "$cfg" "configs/$cfg.yaml" "$IMAGE" \
    --minutes "$MINUTES" --num 4 ${TINY_UNET[@]+"${TINY_UNET[@]}"} ${SWEEP[@]+"${SWEEP[@]}"}
done
# OPTIONAL: a 1024x1024 sample of the training-free patch model (configs/patch.yaml); skipped (status "skipped") where
# `model.kind: patch` does not exist on this checkout (issue 11).
run_part patch "$L_PATCH" -- "${GC[@]}" patch "$OUT" "$IMAGE" --size "$([ "$CPU_SMOKE" = 1 ] && echo 64 || echo 1024)" \
  ${TINY[@]+"${TINY[@]}"}

rm -f "$OUT/speed.raw.json"
echo "gpu-check: done in $(( $(date +%s) - T_START )) s -> $OUT/gpu-check.json" >&2
exit "$FAILED"
