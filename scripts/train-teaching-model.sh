#!/usr/bin/env bash
# Trains the shipped teaching model from scratch on the procedural teaching dataset and writes
# it to models/teaching (what `cmdv generate` uses by default). One command:
#
#   bash scripts/train-teaching-model.sh
#
# Step counts can be changed through the environment (AE_STEPS, CONTENT_STEPS, MOTION_STEPS),
# and DEVICE=wgpu|vulkan|cuda trains on a GPU (cuda needs a `--features cuda` build);
# runs go to $OUT (default runs/teaching). Every stage resumes if interrupted and run again.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-runs/teaching}"
CLIPS="${CLIPS:-448}"
AE_STEPS="${AE_STEPS:-400}"
CONTENT_STEPS="${CONTENT_STEPS:-300}"
MOTION_STEPS="${MOTION_STEPS:-400}"
DEVICE="${DEVICE:-cpu}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cmd-target}"

cargo build --release -p cmdv
cmdv="$CARGO_TARGET_DIR/release/cmdv"
resume() { [ -f "$1/latest" ] && echo --resume || true; }

[ -f "$OUT/data/captions.csv" ] ||
  "$cmdv" make-teaching-data --out "$OUT/data" --count "$CLIPS" --seed 0
"$cmdv" train-ae --data "$OUT/data" --preset tiny --out "$OUT/ae" \
  --steps "$AE_STEPS" --batch 2 --device "$DEVICE" $(resume "$OUT/ae")
"$cmdv" train-content --ae "$OUT/ae" --base teaching --data "$OUT/data" --out "$OUT/content" \
  --steps "$CONTENT_STEPS" --batch 4 --lr 3e-4 --device "$DEVICE" $(resume "$OUT/content")
"$cmdv" train-motion --ae "$OUT/ae" --content "$OUT/content" --data "$OUT/data" \
  --out "$OUT/motion" --steps "$MOTION_STEPS" --batch 8 --lr 5e-4 --device "$DEVICE" $(resume "$OUT/motion")
"$cmdv" export --model "$OUT/motion" --out models/teaching
