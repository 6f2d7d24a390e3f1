# worker-m2m: every command installs what it needs first (scripts/setup.sh, idempotent).
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(CURDIR)/node_modules/.bin:$(PATH)
# worker-build would download wasm-bindgen and wasm-opt from GitHub; point it at local ones.
export WASM_BINDGEN_BIN := wasm-bindgen
export WASM_OPT_BIN := $(CURDIR)/node_modules/.bin/wasm-opt
export ESBUILD_BIN := $(CURDIR)/node_modules/@esbuild/linux-x64/bin/esbuild
# workerd: no metrics, and no lookup of a Cloudflare host that is unreachable here.
export WRANGLER_SEND_METRICS := false
export CLOUDFLARE_CF_FETCH_ENABLED := false

.PHONY: setup build test test-native test-wasm test-e2e lint demo dev size fuzz bench simulate clean

setup:
	@bash scripts/setup.sh

build: setup
	bash scripts/build.sh

test: setup lint test-native test-wasm build size test-e2e

lint: setup
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --target wasm32-unknown-unknown -- -D warnings

test-native: setup
	cargo test

test-wasm: setup
	wasm-pack test --node

test-e2e: setup
	node --test --test-concurrency=1 e2e/

size: build
	@bash scripts/size.sh

# Not part of `make test`: fuzzing is open-ended. FUZZ_SECONDS bounds each target (default 60).
fuzz:
	@bash scripts/fuzz.sh

# Not part of `make test`: a few minutes of load. Prints the tables and writes BENCHMARKS.raw.md.
bench: build
	node bench/run.mjs

demo: build
	node scripts/demo.mjs

dev: build
	node scripts/demo.mjs --serve

clean:
	rm -rf build target node_modules .wrangler

# Not part of `make test`: the fleet simulation (SIMULATION.md), in under a minute.
simulate:
	cargo run --release --example simulate
