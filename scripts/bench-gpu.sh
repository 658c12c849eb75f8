#!/usr/bin/env bash
# GPU speed in one run of a few minutes: the paper's clip (16 x 512 x 1024 through CMD at
# SD2.1's size, random weights, 50 + 50 guided DDIM steps, the SD VAE decoder left out as in
# the paper's table) in f32 and f16, the shipped teaching model's clip, and the autoencoder,
# UNet and DiT rows; every table gives per-stage times and peak device memory. The paper:
# 3.13 s and 5.56 GB on an A100 (its Table 3).
#
#   bash scripts/bench-gpu.sh                  # DEVICE=vulkan (wgpu on Vulkan; also wgpu, cuda)
#   SIZE=small bash scripts/bench-gpu.sh       # the same rows at the smallest sizes, to check
#                                              # the script on a software Vulkan (lavapipe)
#
# Needs a Vulkan loader and driver (an NVIDIA driver brings both; `vulkaninfo --summary` shows
# the adapter). DEVICE=cuda needs a cmdv built with `--features cuda` (see docs/cli.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-vulkan}"
SIZE="${SIZE:-paper}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cmd-target}"
cargo build --release --workspace
cmdv="$CARGO_TARGET_DIR/release/cmdv"

echo "== machine"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
if command -v vulkaninfo >/dev/null; then
  vulkaninfo --summary 2>/dev/null | grep -E 'deviceName|driverName' || true
fi

row() {
  echo
  echo "== cmdv $*"
  "$cmdv" "$@" --device "$DEVICE"
}

case "$SIZE" in
  paper)
    row bench generate --preset sd21-512x1024 --steps 50 --motion-steps 50
    row bench generate --preset sd21-512x1024 --steps 50 --motion-steps 50 --half
    row bench generate --preset teaching --steps 25 --motion-steps 25
    row bench ae --preset sd21-512x1024
    row bench ae --preset ucf64
    row bench unet --config sd21 --height 64 --width 128
    row bench unet --config sd15 --height 64 --width 64
    row bench dit --preset XL
    ;;
  small)
    row bench generate --preset tiny --steps 2 --motion-steps 2
    row bench generate --preset tiny --steps 2 --motion-steps 2 --half
    row bench generate --preset teaching --steps 2 --motion-steps 2
    row bench ae --preset tiny --iters 2
    row bench unet --config teaching --height 32 --width 32 --iters 2
    row bench dit --preset tiny --iters 2
    ;;
  *)
    echo "SIZE=$SIZE: expected paper or small" >&2
    exit 2
    ;;
esac
