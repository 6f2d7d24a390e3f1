#!/usr/bin/env bash
# Builds the proxy Worker into build/ (wrangler.toml's [build] command and `make build`):
# worker-build; then its module moves to build/m2m.js behind our entry (scripts/entry.mjs, the
# hot path without a Rust future; docs/performance.md; with scripts/intake.mjs, what every
# request asked for), and the wasm name section is dropped to
# stay inside the size budget.
set -euo pipefail
cd "$(dirname "$0")/.."
# Also wrangler.toml's [build] command, so `npx wrangler dev` and `wrangler deploy` build with
# the tools `make setup` installed, not copies worker-build would fetch from GitHub.
export PATH="$PWD/.tools/node/bin:$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"
command -v wasm-bindgen >/dev/null && export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-wasm-bindgen}"
[ -x node_modules/.bin/wasm-opt ] && export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
esbuild_bin=$(ls -d node_modules/@esbuild/*/bin/esbuild 2>/dev/null | head -n1 || true)
[ -n "$esbuild_bin" ] && export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/$esbuild_bin}"
# A clean build prints no warning: one from the bundler (esbuild) fails it, so none goes unread.
mkdir -p target
worker-build --release 2>&1 | tee target/worker-build.log
if grep -q WARNING target/worker-build.log; then
  echo "build.sh: the build printed a warning (above); fix it at its source" >&2
  exit 1
fi
mv build/index.js build/m2m.js
cp scripts/entry.mjs build/index.js
cp scripts/intake.mjs build/intake.js
# KEEP_WASM_NAMES=1 keeps them, for CPU profiles with Rust names (`make profile`).
[ -n "${KEEP_WASM_NAMES:-}" ] || node scripts/strip-names.mjs build/index_bg.wasm
