#!/usr/bin/env bash
# Trains the shipped teaching model from scratch on the procedural teaching dataset and writes
# it to models/teaching (what `cmdv generate` uses by default). One command:
#
#   bash scripts/train-teaching-model.sh
#
# Step counts can be changed through the environment (AE_STEPS, CONTENT_STEPS, MOTION_STEPS);
# DEVICE=wgpu|vulkan|cuda trains on a GPU (cuda needs a `--features cuda` build) and DEVICES=N
# on N of them. Runs go to $OUT (default runs/teaching). Every stage resumes if interrupted and
# run again, and a finished stage is skipped, so raising a step count and rerunning continues.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-runs/teaching}"
CLIPS="${CLIPS:-448}"
AE_STEPS="${AE_STEPS:-1000}"
CONTENT_STEPS="${CONTENT_STEPS:-9000}"
MOTION_STEPS="${MOTION_STEPS:-7250}"
DEVICE="${DEVICE:-cpu}"
DEVICES="${DEVICES:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cmd-target}"

cargo build --release -p cmdv
cmdv="$CARGO_TARGET_DIR/release/cmdv"
resume() { [ -f "$1/latest" ] && echo --resume || true; }
on=(--device "$DEVICE" --devices "$DEVICES")

# 32x32 clips: a quarter of the work of 64x64, and enough to read colour and direction.
[ -f "$OUT/data/captions.csv" ] ||
  "$cmdv" make-teaching-data --out "$OUT/data" --count "$CLIPS" --seed 0 --size 32
"$cmdv" train-ae --data "$OUT/data" --preset teaching --out "$OUT/ae" \
  --steps "$AE_STEPS" --batch 8 "${on[@]}" $(resume "$OUT/ae")
# v-prediction: a content UNet trained from scratch for a few thousand steps samples smooth
# images with it, where epsilon prediction leaves noise. Whole frames, no flips (captions say
# left and right).
"$cmdv" train-content --ae "$OUT/ae" --base teaching --prediction v --data "$OUT/data" \
  --out "$OUT/content" --steps "$CONTENT_STEPS" --batch 8 --lr 5e-4 --crop-min 1 \
  "${on[@]}" $(resume "$OUT/content")
# v-prediction here too: an epsilon DiT this young predicts the clean motion latent worse than
# zero at the high-noise end. The pooled text averages the prompt's own tokens, not padding.
"$cmdv" train-motion --ae "$OUT/ae" --content "$OUT/content" --data "$OUT/data" \
  --out "$OUT/motion" --steps "$MOTION_STEPS" --batch 16 --lr 5e-4 --crop-min 1 \
  --prediction v --text-pooling prompt-tokens "${on[@]}" $(resume "$OUT/motion")
"$cmdv" export --model "$OUT/motion" --out models/teaching
