#!/usr/bin/env python3
"""Fails when Cargo.toml's `rust-version` is not the crate's real minimum Rust.

The floor is set by what the crate depends on: the highest `rust-version` any dependency
declares (for every target, so wasm32's `worker` counts as much as a native test's). A declared
minimum below it is a promise the dependencies break (`worker` 0.8.7 needs 1.91); one above it
asks users for a newer compiler than anything needs. The crate's own code is held to the same
number by clippy's `incompatible_msrv` lint (on by default), which reads `rust-version` and
flags any standard-library item stabilised after it. When that toolchain is installed
(`rustup toolchain list`), the crate is also checked with it. Run by `make lint`.
"""

import json
import subprocess
import sys


def version(text):
    return tuple(int(p) for p in text.split("."))


def main():
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        check=True, capture_output=True, text=True).stdout)
    ours = {p["id"] for p in meta["packages"] if p["id"] in meta["workspace_members"]}
    crate = next(p for p in meta["packages"] if p["id"] in ours)
    declared = crate.get("rust_version")
    if not declared:
        sys.exit("Cargo.toml: no rust-version")
    deps = [(version(p["rust_version"]), p["name"], p["version"])
            for p in meta["packages"] if p["id"] not in ours and p.get("rust_version")]
    floor, name, ver = max(deps)
    floor_text = ".".join(map(str, floor))
    if version(declared) != floor:
        sys.exit(f"Cargo.toml: rust-version is {declared}, but the dependencies' minimum is "
                 f"{floor_text} (set by {name} {ver}): declare {floor_text}")
    toolchains = subprocess.run(["rustup", "toolchain", "list"], capture_output=True, text=True).stdout
    if any(line.startswith(declared) for line in toolchains.splitlines()):
        subprocess.run(["cargo", f"+{declared}", "check", "--locked", "--target", "wasm32-unknown-unknown"], check=True)
        print(f"msrv: rust-version {declared} holds (the dependencies' minimum; checked with that toolchain)")
    else:
        print(f"msrv: rust-version {declared} is the dependencies' minimum ({name} {ver}); "
              f"the crate's own code is held to it by clippy's incompatible_msrv")


main()
