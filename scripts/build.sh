#!/usr/bin/env bash
# Builds the proxy Worker into build/ (wrangler.toml's [build] command and `make build`):
# worker-build; then its module moves to build/m2m.js behind our entry (scripts/entry.mjs, the
# hot path without a Rust future; docs/performance.md; with scripts/intake.mjs, what every
# request asked for), and the wasm name section is dropped to
# stay inside the size budget.
set -euo pipefail
cd "$(dirname "$0")/.."
worker-build --release
mv build/index.js build/m2m.js
cp scripts/entry.mjs build/index.js
cp scripts/intake.mjs build/intake.js
# KEEP_WASM_NAMES=1 keeps them, for CPU profiles with Rust names (`make profile`).
[ -n "${KEEP_WASM_NAMES:-}" ] || node scripts/strip-names.mjs build/index_bg.wasm
