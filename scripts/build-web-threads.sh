#!/usr/bin/env bash
# Builds the browser engine's threaded variant into SITE_DIR/threads/: the CPU backend and
# kernels on a rayon pool of Web Workers that share the engine's memory. The page uses it where
# it is cross-origin isolated (see web/README.md) and the model runs on the CPU; it has no
# WebGPU. `trunk build --release` runs this after building the site (Trunk.toml's hook, with
# SITE_DIR its staging folder); debug builds skip it, and the page then keeps to one thread.
#
#   scripts/build-web-threads.sh [SITE_DIR]   (default: Trunk's staging folder, else dist)
#   scripts/build-web-threads.sh --clippy     (lint that build instead: clippy -D warnings)
#
# Shared memory needs the standard library compiled with atomics (`-Z build-std`, from the
# `rust-src` component). RUSTC_BOOTSTRAP lets the project's stable compiler take that one
# unstable flag, for this build only. Its own target folder keeps these flags from
# invalidating the other builds.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
clippy=false
if [ "${1:-}" = --clippy ]; then
  clippy=true
  shift
fi
site="${1:-${TRUNK_STAGING_DIR:-$root/dist}}"
if [ "${TRUNK_PROFILE:-release}" != release ]; then
  echo "build-web-threads: skipped in a debug build (the page keeps to one thread)"
  exit 0
fi
if ! $clippy && [ ! -d "$site" ]; then
  echo "error: $site not found: build the site first (trunk build --release)" >&2
  exit 1
fi
target_dir="${CARGO_TARGET_DIR:-$root/target}/wasm-threads"
rustup component add rust-src >/dev/null
# Atomics in the code, and a shared memory imported from JavaScript (which wasm-bindgen hands
# to every worker) with the thread-local storage symbols its thread start-up needs (rustc no
# longer adds these linker flags itself for `+atomics`). A shared memory declares its maximum,
# which some browsers reserve up front: 1 GiB, twenty times what the page uses (52 MiB after
# generating, decomposing and transferring clips).
flags=(-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128)
for arg in --shared-memory --import-memory --max-memory=1073741824 --export=__wasm_init_tls \
  --export=__tls_size --export=__tls_align --export=__tls_base; do
  flags+=(-C "link-arg=$arg")
done
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${flags[*]}"
cargo_threads() {
  local command=$1
  shift
  (cd "$root" && RUSTC_BOOTSTRAP=1 cargo "$command" --release --lib -p cmd-web \
    --target wasm32-unknown-unknown --target-dir "$target_dir" -Z build-std=std,panic_abort "$@")
}
if $clippy; then
  cargo_threads clippy -- -D warnings
  exit
fi
cargo_threads build
rm -rf "$site/threads"
wasm-bindgen --target web --no-typescript --out-name cmd-web --out-dir "$site/threads" \
  "$target_dir/wasm32-unknown-unknown/release/cmd_web.wasm"
echo "build-web-threads: built $site/threads"
