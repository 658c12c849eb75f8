#!/usr/bin/env bash
# Decode throughput of the training-data pipeline: examples per second decoded and resized
# to 16 x 256 x 256 from a folder of 720p H.264 mp4s, with 1 and N decoding threads.
#
#   bash scripts/bench-data.sh            # N = the number of cores
#
# The clips are cut from the recordings of Debian's opencv-doc package (fetched with
# `apt-get download`, no root needed) and scaled to 1280x720: 24 clips of 4 s at their own
# frame rates, H.264 High (libx264, crf 23, the usual web export). Needs ffmpeg.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${WORK:-/tmp/cmd-bench-data}"
cores=$(nproc)
if [ ! -f "$work/.done" ]; then
  rm -rf "$work" && mkdir -p "$work/src" "$work/clips"
  (cd "$work/src" && apt-get download -qq opencv-doc >/dev/null && dpkg -x opencv-doc_*.deb x)
  doc="$work/src/x/usr/share/doc/opencv-doc"
  gunzip -c "$doc/opencv4/html/box.mp4.gz" >"$work/src/box.mp4"
  gunzip -c "$doc/opencv4/html/cup.mp4.gz" >"$work/src/cup.mp4"
  i=0
  for src in "$work/src/box.mp4" "$work/src/cup.mp4" "$doc/examples/data/vtest.avi" \
    "$doc/examples/data/Megamind.avi"; do
    for start in 0 1 2 3 4 5; do
      ffmpeg -nostdin -loglevel error -y -ss "$start" -i "$src" -t 4 -an \
        -vf scale=1280:720,setsar=1 -c:v libx264 -profile:v high -crf 23 -pix_fmt yuv420p \
        "$work/clips/clip-$(printf %02d $i).mp4"
      i=$((i + 1))
    done
  done
  touch "$work/.done"
fi
cargo build --release -p cmdv
bin="${CARGO_TARGET_DIR:-target}/release/cmdv"
workers="1"
[ "$cores" -gt 1 ] && workers="1,$cores"
"$bin" bench data --data "$work/clips" --height 256 --width 256 --workers "$workers" \
  --examples "${EXAMPLES:-48}"
