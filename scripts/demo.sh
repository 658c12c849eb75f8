#!/usr/bin/env bash
# Set up and run the main job on a fresh Debian/Ubuntu machine: install the build
# dependencies, build `cmdv`, train the `tiny` autoencoder briefly on the bundled real clips,
# and reconstruct one of them, writing the pictures and printing PSNR/SSIM.
#
#   STEPS=300 bash scripts/demo.sh      # longer training, better reconstruction
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-150}"
OUT="${OUT:-out/demo}"

if ! command -v cargo >/dev/null; then
  echo "Rust is needed: install it from https://rustup.rs, then run this script again." >&2
  exit 1
fi
missing=()
for pkg in gcc nasm; do command -v "$pkg" >/dev/null || missing+=("$pkg"); done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

cargo build --release -p cmdv
bin="${CARGO_TARGET_DIR:-target}/release/cmdv"

rm -rf "$OUT"
mkdir -p "$OUT/data"
cp tests/fixtures/clips/*.y4m "$OUT/data/"
"$bin" train-ae --data "$OUT/data" --preset tiny --out "$OUT/run" --steps "$STEPS" --batch 2
"$bin" reconstruct --ae "$OUT/run" --input tests/fixtures/clips/box.mp4 --out "$OUT/box"
echo "pictures: $OUT/box/{content,weights,motion}.png, input.gif and recon.gif"
