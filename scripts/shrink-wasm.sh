#!/usr/bin/env bash
# Shrinks the built browser site's engines with binaryen's wasm-opt (-O1): the one-thread
# engine 41.6 -> 27.5 MB, 5.6 MB gzipped, and the threaded one (threads/) where it was built;
# their speed is unchanged (docs/benchmarks.md). -Os makes 24.9 MB but 6.0 MB gzipped, in 5.6
# minutes against 2. Run after `trunk build --release`, before publishing dist/. The pinned
# binaryen comes from the npm package of tests/browser (`npm ci` there).
#
#   scripts/shrink-wasm.sh [SITE_DIR]   (default: dist)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
site="${1:-$root/dist}"
opt="$root/tests/browser/node_modules/binaryen/bin/wasm-opt"
if [ ! -f "$site/cmd-web_bg.wasm" ]; then
  echo "error: $site/cmd-web_bg.wasm not found: build the site first (trunk build --release)" >&2
  exit 1
fi
if [ ! -f "$opt" ]; then
  echo "error: $opt not found: run 'npm ci' in tests/browser first" >&2
  exit 1
fi
# The features rustc's wasm32-unknown-unknown output uses, with simd128 (.cargo/config.toml),
# and shared memory and atomics in the threaded engine.
features=(--enable-simd --enable-bulk-memory --enable-multivalue --enable-mutable-globals
  --enable-nontrapping-float-to-int --enable-reference-types --enable-sign-ext --enable-threads)
for wasm in "$site/cmd-web_bg.wasm" "$site/threads/cmd-web_bg.wasm"; do
  [ -f "$wasm" ] || continue
  before=$(stat -c %s "$wasm")
  node "$opt" -O1 "${features[@]}" "$wasm" -o "$wasm.shrunk"
  mv "$wasm.shrunk" "$wasm"
  echo "shrank $wasm: $before -> $(stat -c %s "$wasm") bytes"
done
