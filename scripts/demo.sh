#!/usr/bin/env bash
# Set up and run the main job on a fresh Debian/Ubuntu machine: install the build
# dependencies, build `cmdv`, and generate clips from text prompts with the teaching model that
# ships in models/teaching (seconds on a laptop CPU).
#
#   PROMPT="a yellow triangle rotating on a gray background" bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/demo}"
PROMPT="${PROMPT:-a green square moving right on a black background}"

if ! command -v cargo >/dev/null; then
  echo "Rust is needed: install it from https://rustup.rs, then run this script again." >&2
  exit 1
fi
# gcc and nasm build OpenH264; ffmpeg reads and writes every common video format; lavapipe
# (mesa-vulkan-drivers) gives the wgpu tests a CPU Vulkan device.
missing=()
for pkg in gcc nasm ffmpeg; do command -v "$pkg" >/dev/null || missing+=("$pkg"); done
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

cargo build --release -p cmdv
bin="${CARGO_TARGET_DIR:-target}/release/cmdv"

mkdir -p "$OUT"
# The settings the teaching model's adherence is measured with (the browser app's defaults
# too): 25 + 25 DDIM steps, guidance 5 and 3; faster than the spec's 50 + 100.
teaching=(--steps 25 --motion-steps 25 --guidance 5 --motion-guidance 3)
"$bin" generate --prompt "$PROMPT" "${teaching[@]}" --out "$OUT/clip.gif"
"$bin" generate --prompt "a red circle moving up on a white background" --seed 1 \
  "${teaching[@]}" --out "$OUT/red-circle.gif"
echo "clips: $OUT/clip.gif ($PROMPT), $OUT/red-circle.gif"
