#!/usr/bin/env bash
# Shrinks the built browser site's engine with binaryen's wasm-opt (-O1): 41.6 -> 27.5 MB,
# 5.6 MB gzipped; its speed is unchanged (docs/benchmarks.md). -Os makes 24.9 MB but 6.0 MB
# gzipped, in 5.6 minutes against 2. Run after `trunk build --release`, before publishing
# dist/. The pinned binaryen comes from the npm package of tests/browser (`npm ci` there).
#
#   scripts/shrink-wasm.sh [SITE_DIR]   (default: dist)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
site="${1:-$root/dist}"
wasm="$site/cmd-web_bg.wasm"
opt="$root/tests/browser/node_modules/binaryen/bin/wasm-opt"
if [ ! -f "$wasm" ]; then
  echo "error: $wasm not found: build the site first (trunk build --release)" >&2
  exit 1
fi
if [ ! -f "$opt" ]; then
  echo "error: $opt not found: run 'npm ci' in tests/browser first" >&2
  exit 1
fi
before=$(stat -c %s "$wasm")
# The features rustc's wasm32-unknown-unknown output uses, with simd128 (.cargo/config.toml).
node "$opt" -O1 --enable-simd --enable-bulk-memory --enable-multivalue --enable-mutable-globals \
  --enable-nontrapping-float-to-int --enable-reference-types --enable-sign-ext \
  "$wasm" -o "$wasm.shrunk"
mv "$wasm.shrunk" "$wasm"
echo "shrank $wasm: $before -> $(stat -c %s "$wasm") bytes"
