#!/usr/bin/env python3
"""Fails when a module of src/ imports, directly or not, a module that imports it back.

A module is a file (`src/a/b.rs` is `crate::a::b`, `src/a/mod.rs` is `crate::a`). An edge is
any path the file's code names: `use crate::x::y`, `crate::x::f(..)` in an expression,
`super::z`, `self::child`, resolved to the longest prefix that is a module. Comments, doc
comments and `#[cfg(test)]` blocks are left out, and so are the test-only modules (`tests/`
folders): tests may import anything. Run by `make lint`; `--graph` prints the edges.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"


def module_of(path: Path) -> tuple:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return tuple(parts)


def strip(text: str) -> str:
    """The code without comments, string literals and `#[cfg(test)]` items."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        # Skip the item that follows: up to its `;` or its balanced `{ ... }`.
        j, depth = m.end(), 0
        while j < len(text):
            c = text[j]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    j += 1
                    break
            elif c == ";" and depth == 0:
                j += 1
                break
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def expand_use_groups(code: str):
    """Every path a `use` tree names, groups `{a, b::c}` expanded."""
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        yield from expand(re.sub(r"\s+", "", m.group(1)))


def expand(tree: str):
    brace = tree.find("{")
    if brace < 0:
        yield tree.split(" as ")[0]
        return
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    depth, start = 0, 0
    for k, c in enumerate(inner + ","):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            part = inner[start:k]
            start = k + 1
            if part:
                yield from expand(prefix + part)


def main() -> int:
    files = {}
    for path in sorted(ROOT.rglob("*.rs")):
        mod = module_of(path)
        if "tests" in mod:
            continue
        files[mod] = strip(path.read_text())
    modules = set(files)

    def resolve(path: list) -> tuple:
        for n in range(len(path), 0, -1):
            if tuple(path[:n]) in modules:
                return tuple(path[:n])
        return ()

    edges = {m: set() for m in modules}
    for mod, code in files.items():
        paths = set(expand_use_groups(code))
        paths |= set(re.findall(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", code))
        for p in paths:
            segs = [s for s in p.split("::") if s and s != "*"]
            if not segs:
                continue
            if segs[0] == "crate":
                target = segs[1:]
            elif segs[0] in ("super", "self"):
                base = list(mod)
                while segs and segs[0] in ("super", "self"):
                    if segs.pop(0) == "super":
                        base = base[:-1]
                target = base + segs
            else:
                continue
            t = resolve(target)
            if t and t != mod:
                edges[mod].add(t)

    def name(m: tuple) -> str:
        return "::".join(m) or "crate"

    if "--graph" in sys.argv:
        for m in sorted(edges):
            print(f"{name(m)} -> {', '.join(sorted(map(name, edges[m])))}")

    # Strongly connected components (Tarjan): any with two or more modules is a cycle.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    sys.setrecursionlimit(10_000)
    for v in sorted(modules):
        if v not in index:
            visit(v)
    if not sccs:
        print(f"cycles: none among {len(modules)} modules of src/")
        return 0
    for comp in sccs:
        members = set(comp)
        print("import cycle: " + ", ".join(sorted(map(name, comp))))
        for m in sorted(comp):
            back = sorted(name(t) for t in edges[m] if t in members)
            print(f"  {name(m)} -> {', '.join(back)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
