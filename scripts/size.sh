#!/usr/bin/env bash
# Reports the proxy build's wasm size and fails past the budget (gzip, as Cloudflare counts it).
set -euo pipefail
cd "$(dirname "$0")/.."
budget_kib=${WASM_GZIP_BUDGET_KIB:-230}
wasm=build/index_bg.wasm
raw=$(wc -c < "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
awk -v r="$raw" -v g="$gz" -v b="$budget_kib" 'BEGIN { printf "wasm size: %d bytes raw (%.1f KiB), %d bytes gzip (%.1f KiB); budget %d KiB gzip\n", r, r/1024, g, g/1024, b }'
if [ "$gz" -gt $((budget_kib * 1024)) ]; then
  echo "wasm gzip size exceeds the ${budget_kib} KiB budget" >&2
  exit 1
fi
