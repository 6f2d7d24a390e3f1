#!/usr/bin/env bash
# Builds the proxy Worker into build/ (wrangler.toml's [build] command and `make build`):
# worker-build, then the wasm name section dropped to stay inside the size budget.
set -euo pipefail
cd "$(dirname "$0")/.."
worker-build --release
node scripts/strip-names.mjs build/index_bg.wasm
