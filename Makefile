# worker-m2m: every command installs what it needs first (scripts/setup.sh, idempotent).
SHELL := /bin/bash
# .tools/node: the pinned Node that scripts/setup.sh installs when the machine's own is too old.
export PATH := $(CURDIR)/.tools/node/bin:$(HOME)/.cargo/bin:$(CURDIR)/node_modules/.bin:$(PATH)
# worker-build would download wasm-bindgen and wasm-opt from GitHub; point it at local ones.
export WASM_BINDGEN_BIN := wasm-bindgen
export WASM_OPT_BIN := $(CURDIR)/node_modules/.bin/wasm-opt
export ESBUILD_BIN := $(CURDIR)/node_modules/@esbuild/linux-x64/bin/esbuild
# workerd: no metrics, and no lookup of a Cloudflare host that is unreachable here.
export WRANGLER_SEND_METRICS := false
export CLOUDFLARE_CF_FETCH_ENABLED := false

.PHONY: setup build build-example test test-native test-wasm test-e2e lint demo dev size fuzz bench profile simulate metrics clean

setup:
	@bash scripts/setup.sh

build: setup
	bash scripts/build.sh

test: setup lint test-native test-wasm build size build-example test-e2e

# The library example (examples/two-apis, a Rust Worker with default features off), built so
# the README's Rust quick start cannot rot; e2e/library.test.mjs runs it. Its own target dir:
# cargo also builds a dependency's cdylib, and in the proxy's target/ the example's build of this
# crate (without the proxy) would overwrite the proxy's worker_m2m.wasm.
EXAMPLE_TARGET := $(CURDIR)/target/example
build-example: setup
	cd examples/two-apis && CARGO_TARGET_DIR=$(EXAMPLE_TARGET) worker-build --release

lint: setup
	python3 scripts/cycles.py
	python3 scripts/msrv.py
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --target wasm32-unknown-unknown -- -D warnings
	cargo clippy --target wasm32-unknown-unknown --no-default-features -- -D warnings
	cargo doc --no-deps --target wasm32-unknown-unknown 2>&1 | tee target/doc.log; ! grep -q '^warning' target/doc.log
	cd examples/two-apis && cargo fmt -- --check && CARGO_TARGET_DIR=$(EXAMPLE_TARGET) cargo clippy --target wasm32-unknown-unknown -- -D warnings
	# The runtime's types for the compatibility date, from the pinned workerd (`wrangler types`).
	cd examples/js-caller && wrangler types --include-env=false worker-configuration.d.ts >/dev/null
	tsc -p examples/js-caller
	node scripts/docs-check.mjs

test-native: setup
	cargo test

test-wasm: setup
	wasm-pack test --node

test-e2e: setup
	node --test --test-concurrency=1 'e2e/*.test.mjs'

size: build
	@bash scripts/size.sh

# Not part of `make test`: fuzzing is open-ended. FUZZ_SECONDS bounds each target (default 60).
fuzz:
	@bash scripts/fuzz.sh

# Not part of `make test`: a few minutes of load. Prints the tables and writes BENCHMARKS.raw.md.
bench: build
	node bench/run.mjs

# Not part of `make test`: V8 CPU profiles of the hot path (bench/profile.mjs), with Rust names.
profile: setup
	KEEP_WASM_NAMES=1 bash scripts/build.sh
	node bench/profile.mjs $(or $(VARIANTS),b r a c)
	bash scripts/build.sh

demo: build
	node scripts/demo.mjs

# The queries of docs/operating.md ("Metrics") against the Analytics Engine SQL API, for the account and
# API token in CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN (METRICS_ARGS: e.g. --since '24' HOUR).
metrics:
	node scripts/metrics.mjs $(METRICS_ARGS)

# The proxy in `wrangler dev` (port 8787, settings from .dev.vars) in front of the demo's
# authorization server and API (scripts/dev.mjs); wrangler builds it (wrangler.toml's [build]).
dev: setup
	node scripts/dev.mjs

clean:
	rm -rf build target node_modules .tools .wrangler examples/two-apis/build

# Not part of `make test`: the fleet simulation (SIMULATION.md), in under a minute.
simulate:
	cargo run --release --example simulate
