#!/usr/bin/env node
// docs-check: the links and code samples of README.md and docs/*.md (`make lint`). Node's
// built-ins only, plus the project's own TypeScript (node_modules, from package-lock.json).
//
// Links (README.md, docs/*.md, SIMULATION.md, BENCHMARKS.md):
//   - a relative target must exist; `#anchor` and `file.md#anchor` must name a heading of that
//     page, slugged as GitHub does (lowercase, punctuation other than `-` and `_` dropped, each
//     space a `-`, a repeated slug gets `-1`, `-2`, ...);
//   - an http(s) target must parse as a URL with a host (nothing is fetched).
//
// Code samples (README.md and docs/*.md): every fenced block names its language, and is one of:
//   - a copy: `<!-- sample: PATH [lines N-M] [uncomment] -->` on the line(s) just above the fence.
//     The block (leading and trailing blank lines, trailing spaces and common indentation aside)
//     must appear verbatim in PATH (or be exactly its lines N-M); `uncomment` first strips a
//     leading `# ` from PATH's lines (wrangler.toml's commented-out blocks). PATH must be a file
//     that something checks (CHECKED below). Rust copies of wasm32-only examples are fenced
//     `rust,ignore`: the copy is what is checked.
//   - ```rust: compiled by `cargo test --doc`: the page must be included by a `#[cfg(doctest)]`
//     item in src/lib.rs. `ignore` needs a copy marker or `<!-- ignore: reason -->`.
//   - ```ts / ```js: type-checked together with the project's tsc against the runtime's types
//     (`wrangler types`, as examples/js-caller is), each block as its own module;
//     `worker-m2m/types/...` resolves to types/. A fragment names what it assumes in
//     `<!-- given: declare const env: Env; -->` lines above the fence (prepended, not shown).
//   - ```toml: parsed (TOML 1.0 syntax, duplicate keys and tables).
//   - ```sh / ```console / ```bash: every `make TARGET` is a Makefile target, every
//     `node FILE` / `bash FILE` names a file that exists.
//   - ```env: `NAME=value` lines.
//   - ```json: the block, or each of its lines, parses.
//   - ```sql: the queries of scripts/metrics.mjs (QUERIES, for '7' DAY and worker_m2m), each
//     after a `-- NAME: ...` comment.
//   - ```text: output; not checked.
//   In toml, sh, console, bash and env blocks (and in every .toml file copied from), an
//   UPPERCASE name with an OAUTH_, PROXY_, M2M_, TOKEN_ or UPSTREAM_ part must be a setting of
//   the settings table in docs/configuration.md, or one with a profile's prefix
//   (BILLING_OAUTH_SCOPE); a name after `secrets-store:` is a binding, not a setting. Every
//   setting of that table must be mentioned somewhere under src/ or scripts/.
//
// Pages: each docs/*.md opens with "# Title", then "For ...", and the README links it.
//
// A copy also gets its language's syntax and name checks below, not its type check or doc test.
//
// Fails with file:line and the reason; prints one summary line when all is well.
// DOCS_CHECK_VERBOSE=1 also prints how each block was checked.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rel = (p) => path.relative(root, p).split(path.sep).join('/');

const errors = [];
const fail = (file, line, msg) => errors.push(`${file}:${line}: ${msg}`);
const counts = { links: 0, external: 0, anchors: 0, samples: 0 };
const kinds = {};
let current = null; // the block being checked, for DOCS_CHECK_VERBOSE
const counted = (kind) => {
  counts.samples += 1;
  kinds[kind] = (kinds[kind] ?? 0) + 1;
  if (process.env.DOCS_CHECK_VERBOSE) console.log(`${current.file}:${current.line}: ${current.info}: ${kind}`);
};

// Files a sample may copy from, and what checks each (a prefix of the path relative to root).
const CHECKED = [
  ['examples/js-caller/src/', 'tsc -p examples/js-caller (make lint); e2e/rpc.test.mjs'],
  ['examples/js-caller/wrangler.toml', 'parsed and name-checked here'],
  ['examples/two-apis/src/', 'make build-example; e2e/library.test.mjs'],
  ['examples/two-apis/wrangler.toml', 'parsed and name-checked here'],
  ['examples/two-apis/Cargo.toml', 'make build-example'],
  ['types/', 'tsc -p examples/js-caller (make lint)'],
  ['e2e/', "node --test 'e2e/*.test.mjs' (make test-e2e)"],
  ['scripts/', 'make lint, make test, make demo'],
  ['src/', 'cargo build and cargo test'],
  ['tests/', 'cargo test'],
  ['wrangler.toml', 'wrangler; parsed and name-checked here'],
  ['.dev.vars.example', 'e2e/wrangler-dev.test.mjs (wrangler dev with exactly these settings)'],
  ['Cargo.toml', 'cargo'],
  ['Makefile', 'make'],
];

// ---------------------------------------------------------------------------------------------
// Markdown: fences, the comments above them, headings, links.

const FENCE = /^(\s*)(`{3,}|~{3,})(.*)$/;
const MARKER = /^\s*<!--\s*(sample|given|ignore):\s*(.*?)\s*-->\s*$/;

/** A page: its lines, fenced blocks (with the markers above each), headings' slugs. */
function readPage(file) {
  const text = fs.readFileSync(path.join(root, file), 'utf8');
  const lines = text.split('\n');
  const blocks = [];
  const prose = []; // [lineNo, text] outside fences
  for (let i = 0; i < lines.length; i++) {
    const m = FENCE.exec(lines[i]);
    if (!m) { prose.push([i + 1, lines[i]]); continue; }
    const [, indent, fence, info] = m;
    if (fence[0] === '`' && info.includes('`')) { prose.push([i + 1, lines[i]]); continue; }
    const close = new RegExp(`^\\s*${fence[0] === '`' ? '`' : '~'}{${fence.length},}\\s*$`);
    let j = i + 1;
    while (j < lines.length && !close.test(lines[j])) j++;
    if (j >= lines.length) fail(file, i + 1, 'code fence is never closed');
    for (let k = i + 1; k < j; k++) {
      if (/^\s*(`{3,}|~{3,})[A-Za-z]/.test(lines[k])) fail(file, k + 1, `an opening fence inside the block of line ${i + 1}: a fence above is not closed`);
    }
    const strip = (l) => {
      let k = 0;
      while (k < indent.length && l[k] === ' ') k++;
      return l.slice(k);
    };
    const markers = [];
    for (let k = i - 1; k >= 0 && MARKER.test(lines[k]); k--) {
      const [, kind, value] = MARKER.exec(lines[k]);
      markers.unshift({ kind, value, line: k + 1 });
    }
    const words = info.trim().split(/[\s,]+/).filter(Boolean);
    blocks.push({
      file, line: i + 1, lang: (words[0] ?? '').toLowerCase(), attrs: words.slice(1), info: info.trim(),
      body: lines.slice(i + 1, j).map(strip), markers,
    });
    i = j;
  }
  return { file, lines, blocks, prose, anchors: anchorsOf(prose) };
}

/** GitHub's heading slug (github-slugger): rendered text, lowercased, punctuation dropped. */
function slug(heading) {
  const textOf = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // links and images: their text
    .replace(/<[^>]+>/g, '') // inline HTML
    .replace(/`([^`]*)`/g, '$1')
    .replace(/(\*\*|__|\*)(.+?)\1/g, '$2');
  return textOf.trim().toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '').replace(/ /g, '-');
}

function anchorsOf(prose) {
  const seen = new Map();
  const anchors = new Set();
  for (const [, l] of prose) {
    const h = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/.exec(l);
    if (h) {
      const base = slug(h[2]);
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      anchors.add(n ? `${base}-${n}` : base);
    }
    for (const a of l.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) anchors.add(a[1]);
  }
  return anchors;
}

/** Inline links, images, autolinks and reference definitions outside code. */
function linksOf(page) {
  const out = [];
  const refs = new Map();
  for (const [n, raw] of page.prose) {
    const def = /^ {0,3}\[([^\]]+)\]:\s*(\S+)/.exec(raw);
    if (def) { refs.set(def[1].toLowerCase(), true); out.push([n, def[2].replace(/^<|>$/g, '')]); continue; }
    const l = raw.replace(/(`+)(?:(?!\1).)*?\1/g, (s) => ' '.repeat(s.length)); // code spans
    for (const m of l.matchAll(/\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g)) {
      out.push([n, m[1].replace(/^<|>$/g, '')]);
    }
    for (const m of l.matchAll(/<(https?:\/\/[^>\s]+)>/g)) out.push([n, m[1]]);
    for (const m of l.matchAll(/\[([^\]]+)\]\[([^\]]*)\]/g)) {
      const key = (m[2] || m[1]).toLowerCase();
      out.push([n, { ref: key, refs }]);
    }
  }
  return out;
}

const pages = new Map();
function page(file) {
  if (!pages.has(file)) pages.set(file, readPage(file));
  return pages.get(file);
}

function checkLink(p, line, target) {
  counts.links += 1;
  if (typeof target === 'object') {
    if (!target.refs.has(target.ref)) fail(p.file, line, `link reference [${target.ref}] is not defined`);
    return;
  }
  if (target === '') return fail(p.file, line, 'empty link target');
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) {
    if (/^mailto:/i.test(target)) return;
    if (!/^https?:/i.test(target)) return fail(p.file, line, `link scheme not allowed: ${target}`);
    counts.external += 1;
    try {
      const u = new URL(target);
      if (!u.hostname || /\s/.test(target)) throw new Error('no host');
    } catch {
      fail(p.file, line, `malformed URL: ${target}`);
    }
    return;
  }
  const hash = target.indexOf('#');
  const pathPart = decodeURIComponent(hash < 0 ? target : target.slice(0, hash)).replace(/\?.*$/, '');
  const anchor = hash < 0 ? null : decodeURIComponent(target.slice(hash + 1));
  let dest = p.file;
  if (pathPart) {
    const abs = pathPart.startsWith('/') ? path.join(root, pathPart) : path.resolve(root, path.dirname(p.file), pathPart);
    if (!abs.startsWith(root + path.sep) && abs !== root) return fail(p.file, line, `link leaves the repository: ${target}`);
    if (!fs.existsSync(abs)) return fail(p.file, line, `broken link: ${target} (${rel(abs)} does not exist)`);
    dest = rel(abs);
  }
  if (anchor === null) return;
  counts.anchors += 1;
  if (!dest.endsWith('.md')) {
    if (!/^L\d+(-L\d+)?$/.test(anchor)) fail(p.file, line, `anchor #${anchor} on a file that is not Markdown: ${target}`);
    return;
  }
  if (!page(dest).anchors.has(anchor)) {
    fail(p.file, line, `broken anchor: ${target} (${dest} has no heading with the slug "${anchor}")`);
  }
}

// ---------------------------------------------------------------------------------------------
// Settings: the names docs/configuration.md's table lists.

const SETTING_LIKE = /(^|_)(OAUTH|PROXY|M2M|TOKEN|UPSTREAM)_/;
let SETTINGS = new Set();

function readSettings() {
  const file = 'docs/configuration.md';
  const p = page(file);
  const start = p.lines.findIndex((l) => /^\|\s*name\s*\|\s*kind\s*\|\s*meaning\s*\|/.test(l));
  if (start < 0) return fail(file, 1, 'the settings table (| name | kind | meaning |) is missing');
  for (let i = start + 2; i < p.lines.length && p.lines[i].startsWith('|'); i++) {
    const first = p.lines[i].split('|')[1] ?? '';
    for (const m of first.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) SETTINGS.add(m[1]);
  }
  if (SETTINGS.size < 10) fail(file, start + 1, `the settings table lists only ${SETTINGS.size} names`);
  // Each setting is read somewhere: a renamed setting leaves the table (and samples) stale.
  const sources = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(path.join(root, d), { withFileTypes: true })) {
      const f = `${d}/${e.name}`;
      if (e.isDirectory()) walk(f);
      else if (/\.(rs|mjs|js|sh)$/.test(e.name)) sources.push(fs.readFileSync(path.join(root, f), 'utf8'));
    }
  };
  walk('src');
  walk('scripts');
  const all = sources.join('\n');
  for (const name of SETTINGS) {
    if (!all.includes(name)) fail(file, start + 1, `setting ${name} is listed but nothing under src/ or scripts/ mentions it`);
  }
}

function isSetting(name) {
  if (SETTINGS.has(name)) return true;
  for (const s of SETTINGS) {
    if (name.endsWith(`_${s}`) && /^[A-Z][A-Z0-9_]*$/.test(name.slice(0, -s.length - 1))) return true;
  }
  return false;
}

/** Every setting-like name in `lines` (numbered from `first`) is a setting. */
function checkNames(file, first, lines) {
  const text = lines.join('\n');
  const bindings = new Set([...text.matchAll(/secrets-store:([A-Z0-9_]+)/g)].map((m) => m[1]));
  lines.forEach((l, k) => {
    for (const m of l.matchAll(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g)) {
      const name = m[0];
      if (!SETTING_LIKE.test(name) || bindings.has(name) || isSetting(name)) continue;
      fail(file, first + k, `${name} is not a setting (docs/configuration.md's table lists no such name, nor a profile's form of one)`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// TOML 1.0 syntax: keys, strings, numbers, dates, arrays, inline tables, table headers.

function parseToml(text) {
  let i = 0;
  let line = 1;
  const err = (msg) => { throw Object.assign(new Error(msg), { line }); };
  const peek = (s) => text.startsWith(s, i);
  const ws = () => { while (i < text.length && (text[i] === ' ' || text[i] === '\t')) i++; };
  const comment = () => {
    if (text[i] !== '#') return;
    while (i < text.length && text[i] !== '\n') {
      if (/[\x00-\x08\x0a-\x1f\x7f]/.test(text[i])) err('control character in a comment');
      i++;
    }
  };
  const newline = () => {
    if (peek('\r\n')) i += 2; else if (text[i] === '\n') i += 1; else return false;
    line += 1;
    return true;
  };
  const wsnl = () => { for (;;) { ws(); comment(); if (!newline()) return; } };
  const bare = () => {
    const m = /^[A-Za-z0-9_-]+/.exec(text.slice(i, i + 256));
    if (!m) err(`expected a key at ${JSON.stringify(text.slice(i, i + 12))}`);
    i += m[0].length;
    return m[0];
  };
  const key = () => {
    const parts = [];
    for (;;) {
      ws();
      if (text[i] === '"' || text[i] === "'") {
        if (peek('"""') || peek("'''")) err('a key cannot be a multi-line string');
        parts.push(string());
      } else parts.push(bare());
      ws();
      if (text[i] !== '.') return parts;
      i++;
    }
  };
  const hex = (n) => {
    const h = text.slice(i, i + n);
    if (!new RegExp(`^[0-9A-Fa-f]{${n}}$`).test(h)) err('bad unicode escape');
    i += n;
    return String.fromCodePoint(parseInt(h, 16));
  };
  const string = () => {
    if (peek('"""') || peek("'''")) {
      const q = text.slice(i, i + 3);
      i += 3;
      newline();
      let s = '';
      for (;;) {
        if (i >= text.length) err('unterminated multi-line string');
        if (peek(q)) { // up to two more quotes belong to the string: """a""""" is a""
          let n = 0;
          while (text[i + n] === q[0]) n++;
          if (n > 5) err('too many quotes closing a multi-line string');
          i += n;
          return s + q[0].repeat(n - 3);
        }
        if (q === '"""' && text[i] === '\\') {
          i++;
          if (/[ \t\r\n]/.test(text[i])) { // line-ending backslash
            while (/[ \t]/.test(text[i])) i++;
            if (!newline()) err('bad escape');
            for (;;) { ws(); if (!newline()) break; }
            continue;
          }
          s += escape();
          continue;
        }
        if (text[i] === '\n') { line++; }
        s += text[i++];
      }
    }
    const q = text[i++];
    let s = '';
    for (;;) {
      if (i >= text.length || text[i] === '\n') err('unterminated string');
      if (text[i] === q) { i++; return s; }
      if (q === '"' && text[i] === '\\') { i++; s += escape(); continue; }
      if (/[\x00-\x08\x0a-\x1f\x7f]/.test(text[i])) err('control character in a string');
      s += text[i++];
    }
  };
  const escape = () => {
    const c = text[i++];
    const simple = { b: '\b', t: '\t', n: '\n', f: '\f', r: '\r', '"': '"', '\\': '\\' };
    if (c in simple) return simple[c];
    if (c === 'u') return hex(4);
    if (c === 'U') return hex(8);
    return err(`bad escape \\${c}`);
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '"' || c === "'") return string();
    if (c === '[') {
      i++;
      const arr = [];
      for (;;) {
        wsnl();
        if (text[i] === ']') { i++; return arr; }
        arr.push(value());
        wsnl();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return arr; }
        err('expected , or ] in an array');
      }
    }
    if (c === '{') {
      i++;
      const t = {};
      ws();
      if (text[i] === '}') { i++; return t; }
      for (;;) {
        ws();
        if (text[i] === '\n' || text[i] === '\r') err('an inline table must fit on one line');
        assign(t, key());
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return t; }
        err('expected , or } in an inline table (which must fit on one line)');
      }
    }
    const m = /^[^\s,\]}#]+(?: \d{2}:\d{2}[^\s,\]}#]*)?/.exec(text.slice(i, i + 64));
    if (!m) err('expected a value');
    const v = m[0];
    const ok = /^(true|false)$/.test(v)
      || /^[+-]?(0|[1-9](_?\d)*)$/.test(v)
      || /^0x[0-9A-Fa-f](_?[0-9A-Fa-f])*$|^0o[0-7](_?[0-7])*$|^0b[01](_?[01])*$/.test(v)
      || /^[+-]?(0|[1-9](_?\d)*)(\.\d(_?\d)*)?([eE][+-]?\d(_?\d)*)?$/.test(v)
      || /^[+-]?(inf|nan)$/.test(v)
      || /^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?)?$|^\d{2}:\d{2}:\d{2}(\.\d+)?$/.test(v);
    if (!ok) err(`not a TOML value: ${v} (strings need quotes)`);
    i += v.length;
    return v;
  };
  const DEFINED = Symbol('defined');
  const assign = (table, keys) => {
    ws();
    if (text[i] !== '=') err(`expected = after the key ${keys.join('.')}`);
    i++;
    const v = value();
    let t = table;
    for (const k of keys.slice(0, -1)) {
      if (!(k in t)) t[k] = {};
      else if (typeof t[k] !== 'object' || Array.isArray(t[k]) || t[k][DEFINED]) err(`key ${k} is already a value`);
      t = t[k];
    }
    const last = keys.at(-1);
    if (last in t) err(`duplicate key ${keys.join('.')}`);
    t[last] = v;
  };
  const doc = {};
  let current = doc;
  const defined = new Set();
  for (;;) {
    wsnl();
    if (i >= text.length) return doc;
    if (text[i] === '[') {
      const many = peek('[[');
      i += many ? 2 : 1;
      const keys = key();
      if (!peek(many ? ']]' : ']')) err('expected ] closing a table header');
      i += many ? 2 : 1;
      let t = doc;
      for (const k of keys.slice(0, -1)) {
        if (!(k in t)) t[k] = {};
        t = Array.isArray(t[k]) ? t[k].at(-1) : t[k];
        if (typeof t !== 'object') err(`${k} is not a table`);
      }
      const last = keys.at(-1);
      const name = keys.join('.');
      if (many) {
        if (!(last in t)) t[last] = [];
        if (!Array.isArray(t[last])) err(`${name} is not an array of tables`);
        t[last].push({});
        for (const d of [...defined]) if (d.startsWith(`${name}.`)) defined.delete(d); // a new element's own tables
        current = t[last].at(-1);
      } else {
        if (defined.has(name)) err(`table [${name}] defined twice`);
        defined.add(name);
        if (!(last in t)) t[last] = {};
        if (typeof t[last] !== 'object' || Array.isArray(t[last])) err(`${name} is not a table`);
        current = t[last];
      }
    } else {
      assign(current, key());
    }
    ws();
    comment();
    if (i < text.length && !newline()) err(`unexpected ${JSON.stringify(text.slice(i, i + 12))} after a value`);
  }
}

function checkToml(file, firstLine, text) {
  try {
    parseToml(text);
  } catch (e) {
    fail(file, firstLine + (e.line ?? 1) - 1, `TOML: ${e.message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Shell: make targets and the files node and bash are given.

const makeTargets = new Set();
for (const l of fs.readFileSync(path.join(root, 'Makefile'), 'utf8').split('\n')) {
  const m = /^([A-Za-z0-9_.%/ -]+?)\s*:(?![=:])/.exec(l);
  if (m && !l.startsWith('\t')) for (const t of m[1].split(/\s+/)) makeTargets.add(t);
}

/** Words of a shell text, quotes resolved; operators (| || && ; &) as their own words. */
function shellWords(text) {
  const words = [];
  let w = null;
  const push = () => { if (w !== null) words.push(w); w = null; };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && text[i + 1] === '\n') { i++; continue; }
    if (c === '\n') { push(); words.push(';'); continue; }
    if (c === ' ' || c === '\t') { push(); continue; }
    if (c === '#' && w === null) { while (i < text.length && text[i] !== '\n') i++; i--; continue; }
    if ('|&;'.includes(c)) {
      push();
      words.push(text[i + 1] === c ? c + c : c);
      if (text[i + 1] === c) i++;
      continue;
    }
    if (c === "'" || c === '"') {
      const j = text.indexOf(c, i + 1);
      w = (w ?? '') + text.slice(i + 1, j < 0 ? text.length : j);
      i = j < 0 ? text.length : j;
      continue;
    }
    w = (w ?? '') + c;
  }
  push();
  return words;
}

function checkShell(b, body) {
  const words = shellWords(body.join('\n'));
  // The line of a word: the first body line that holds it from where the last one was found.
  let from = 0;
  const lineOf = (word) => {
    for (let k = from; k < body.length; k++) if (body[k].includes(word)) { from = k; return b.line + 1 + k; }
    return b.line + 1;
  };
  let cmd = [];
  const run = () => {
    const args = cmd.filter((x) => !/^[A-Z_][A-Z0-9_]*=/.test(x)); // VAR=value prefixes
    cmd = [];
    if (!args.length) return;
    const [prog, ...rest] = args;
    if (prog === 'make') {
      for (const t of rest) {
        if (t.startsWith('-') || t.includes('=')) continue;
        if (!makeTargets.has(t)) fail(b.file, lineOf(`make ${t}`), `make ${t}: the Makefile has no target ${t}`);
      }
    } else if (prog === 'node' || prog === 'bash' || prog === 'sh') {
      const f = rest[0];
      if (f && !f.startsWith('-') && !fs.existsSync(path.join(root, f))) {
        fail(b.file, lineOf(f), `${prog} ${f}: no such file`);
      }
    }
  };
  for (const w of words) {
    if (['|', '||', '&&', ';', '&'].includes(w)) run();
    else if (!(cmd.length === 0 && w === '$')) cmd.push(w);
  }
  run();
}

// ---------------------------------------------------------------------------------------------
// Copies.

const trimEnd = (lines) => lines.map((l) => l.replace(/\s+$/, ''));
function tidy(lines) {
  const t = trimEnd(lines);
  while (t.length && t[0] === '') t.shift();
  while (t.length && t.at(-1) === '') t.pop();
  const indent = Math.min(...t.filter((l) => l).map((l) => /^ */.exec(l)[0].length));
  return t.map((l) => l.slice(Number.isFinite(indent) ? indent : 0));
}

function checkCopy(b, marker) {
  const m = /^(\S+)((?:\s+(?:lines\s+\d+-\d+|uncomment))*)$/.exec(marker.value);
  if (!m) return fail(b.file, marker.line, `sample marker must read "sample: PATH [lines N-M] [uncomment]", not "${marker.value}"`);
  const [, source, opts] = m;
  const checkedBy = CHECKED.find(([prefix]) => source === prefix || source.startsWith(prefix));
  if (!checkedBy) return fail(b.file, marker.line, `${source} is not a file any build or test checks (see CHECKED in scripts/docs-check.mjs)`);
  const abs = path.join(root, source);
  if (!fs.existsSync(abs) || !fs.statSync(abs).isFile()) return fail(b.file, marker.line, `sample source ${source} does not exist`);
  let src = fs.readFileSync(abs, 'utf8').split('\n');
  if (/uncomment/.test(opts)) src = src.map((l) => l.replace(/^(\s*)# ?/, '$1').replace(/^\s*#$/, ''));
  src = trimEnd(src);
  const block = tidy(b.body);
  if (!block.length) return fail(b.file, b.line, 'empty sample');
  const range = /lines\s+(\d+)-(\d+)/.exec(opts);
  if (range) {
    const [lo, hi] = [Number(range[1]), Number(range[2])];
    const want = tidy(src.slice(lo - 1, hi));
    if (want.join('\n') !== block.join('\n')) {
      const k = block.findIndex((l, x) => l !== want[x]);
      fail(b.file, b.line + 1 + Math.max(k, 0), `sample differs from ${source} lines ${lo}-${hi}: ${JSON.stringify(want[k] ?? '(end)')} there`);
    }
    return;
  }
  let best = { k: -1, at: -1 };
  for (let s = 0; s < src.length; s++) {
    if (!src[s]) continue;
    const ind = /^\s*/.exec(src[s])[0];
    let k = 0;
    for (; k < block.length; k++) {
      const have = src[s + k];
      if (have === undefined) break;
      if (block[k] === '' ? have.trim() !== '' : have !== ind + block[k]) break;
    }
    if (k === block.length) return;
    if (k > best.k) best = { k, at: s };
  }
  const where = best.k > 0 ? ` (the first ${best.k} lines match at ${source}:${best.at + 1}, then ${JSON.stringify(src[best.at + best.k]?.trim() ?? '(end of file)')} there)` : '';
  fail(b.file, b.line + 1 + Math.max(best.k, 0), `sample is not a verbatim copy of ${source}${where}`);
}

// ---------------------------------------------------------------------------------------------
// Rust: which pages src/lib.rs includes as doc tests.

const libRs = fs.readFileSync(path.join(root, 'src/lib.rs'), 'utf8');
const doctested = new Set(
  [...libRs.matchAll(/#\[cfg\(doctest\)\]\s*(?:#\[[^\]]*\]\s*)*?#\[doc\s*=\s*include_str!\("\.\.\/([^"]+)"\)\]/g)].map((m) => m[1]),
);

// ---------------------------------------------------------------------------------------------
// SQL: the queries of scripts/metrics.mjs.

async function checkSql(b) {
  const { QUERIES } = await import(pathToFileURL(path.join(root, 'scripts/metrics.mjs')).href);
  const opts = { dataset: 'worker_m2m', since: "'7' DAY" };
  const found = [];
  let name = null;
  let start = 0;
  let acc = [];
  const flush = () => {
    if (name === null) return;
    if (!(name in QUERIES)) fail(b.file, start, `-- ${name}: scripts/metrics.mjs has no query ${name}`);
    else if (QUERIES[name](opts) !== tidy(acc).join('\n')) fail(b.file, start, `query ${name} differs from scripts/metrics.mjs (QUERIES.${name} for '7' DAY)`);
    found.push(name);
  };
  b.body.forEach((l, k) => {
    const m = /^--\s*([a-z_]+):/.exec(l);
    if (m) { flush(); name = m[1]; start = b.line + 1 + k; acc = []; } else acc.push(l);
  });
  flush();
  if (!found.length) fail(b.file, b.line, 'an sql block must hold scripts/metrics.mjs queries, each after "-- NAME: ..."');
}

// ---------------------------------------------------------------------------------------------
// TypeScript: every ts and js block that is not a copy, in one tsc run.

const tsBlocks = [];

function checkTypeScript() {
  if (!tsBlocks.length) return;
  const tsc = path.join(root, 'node_modules/typescript/bin/tsc');
  // The runtime's types for the compatibility date, as `make lint` generates them for
  // examples/js-caller (`wrangler types`) just before this check.
  const types = path.join(root, 'examples/js-caller/worker-configuration.d.ts');
  if (!fs.existsSync(tsc) || !fs.existsSync(types)) {
    return fail(tsBlocks[0].b.file, tsBlocks[0].b.line, 'no typescript, or no runtime types in examples/js-caller/worker-configuration.d.ts: run `make lint` (it runs npm ci and `wrangler types` first)');
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'docs-check-'));
  try {
    const files = tsBlocks.map(({ b, given }, n) => {
      const name = `sample${n}.ts`;
      fs.writeFileSync(path.join(dir, name), `${given.join('\n')}\n${b.body.join('\n')}\nexport {};\n`);
      return name;
    });
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        target: 'es2022', module: 'es2022', moduleResolution: 'bundler', lib: ['es2022'],
        types: [], strict: true, noEmit: true, skipLibCheck: true, moduleDetection: 'force',
        paths: { 'worker-m2m/types/*': [path.join(root, 'types/*')] },
      },
      files: [types, ...files],
    }, null, 2));
    const r = spawnSync(process.execPath, [tsc, '-p', path.join(dir, 'tsconfig.json'), '--pretty', 'false'], { encoding: 'utf8' });
    if (r.status === 0) return;
    const out = `${r.stdout}${r.stderr}`.trim().split('\n');
    let mapped = 0;
    for (const l of out) {
      const m = /^(?:.*[\\/])?sample(\d+)\.ts\((\d+),(\d+)\): (error TS\d+: .*)$/.exec(l);
      if (!m) continue;
      const { b, given } = tsBlocks[Number(m[1])];
      const k = Number(m[2]) - 1 - given.length; // 0-based line in the block; the given lines come first
      fail(b.file, k < 0 ? b.line - 1 : b.line + 1 + k, `tsc: ${m[4]}${k < 0 ? ' (in a given: line)' : ''}`);
      mapped += 1;
    }
    if (!mapped) fail(tsBlocks[0].b.file, tsBlocks[0].b.line, `tsc failed: ${out.join(' / ')}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// One block.

const TOML_SOURCES = new Set();

async function checkBlock(b) {
  current = b;
  const copy = b.markers.find((m) => m.kind === 'sample');
  const given = b.markers.filter((m) => m.kind === 'given').map((m) => m.value);
  const ignoreReason = b.markers.find((m) => m.kind === 'ignore');
  if (!b.lang) {
    return fail(b.file, b.line, 'a code block must name its language (```text for output): in a page that cargo test --doc includes, a bare fence is compiled as Rust');
  }
  if (b.markers.filter((m) => m.kind === 'sample').length > 1) fail(b.file, b.line, 'more than one sample marker');
  if (copy) {
    checkCopy(b, copy);
    const source = copy.value.split(/\s+/)[0];
    if (source.endsWith('.toml')) TOML_SOURCES.add(source);
  }
  const body = b.body.join('\n');
  switch (b.lang) {
    case 'rust': {
      if (copy) { counted('copy'); return; }
      if (!doctested.has(b.file)) {
        return fail(b.file, b.line, `a Rust sample that is not a copy compiles as a doc test: add #[cfg(doctest)] #[doc = include_str!("../${b.file}")] to src/lib.rs`);
      }
      if (b.attrs.includes('ignore') && !ignoreReason) {
        return fail(b.file, b.line, 'rust,ignore is unchecked: mark it as a copy (<!-- sample: PATH -->) or give <!-- ignore: reason -->');
      }
      counted(b.attrs.includes('ignore') ? 'ignored with a reason' : 'doc test');
      return;
    }
    case 'ts': case 'typescript': case 'js': case 'javascript': case 'mjs':
      if (copy) { counted('copy'); return; }
      tsBlocks.push({ b, given });
      counted('type-checked');
      return;
    case 'toml':
      checkToml(b.file, b.line + 1, body);
      checkNames(b.file, b.line + 1, b.body);
      counted(copy ? 'copy' : 'toml');
      return;
    case 'sh': case 'bash': case 'shell': case 'console': {
      const lines = b.lang === 'console' ? b.body.filter((l) => /^\s*\$ /.test(l)).map((l) => l.replace(/^\s*\$ /, '')) : b.body;
      checkShell(b, lines);
      checkNames(b.file, b.line + 1, b.body);
      counted(copy ? 'copy' : 'shell');
      return;
    }
    case 'env': case 'dotenv':
      b.body.forEach((l, k) => {
        if (l.trim() && !/^\s*#/.test(l) && !/^\s*(export\s+)?[A-Za-z_][A-Za-z0-9_]*=/.test(l)) fail(b.file, b.line + 1 + k, 'env: expected NAME=value');
      });
      checkNames(b.file, b.line + 1, b.body);
      counted(copy ? 'copy' : 'env');
      return;
    case 'json': {
      let ok = true;
      try { JSON.parse(body); } catch {
        ok = false;
      }
      if (!ok) {
        b.body.forEach((l, k) => {
          if (!l.trim()) return;
          try { JSON.parse(l); } catch (e) { fail(b.file, b.line + 1 + k, `JSON: ${e.message}`); }
        });
      }
      counted(copy ? 'copy' : 'json');
      return;
    }
    case 'sql':
      if (copy) { counted('copy'); return; }
      await checkSql(b);
      counted('sql');
      return;
    case 'text': case 'plain': case 'output':
      counted(copy ? 'copy' : 'output');
      return;
    default:
      if (copy) { counted('copy'); return; }
      fail(b.file, b.line, `no check for \`\`\`${b.lang} blocks: mark it as a copy (<!-- sample: PATH -->), or use text for output`);
  }
}

// ---------------------------------------------------------------------------------------------

const docs = fs.readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`);
const sampled = ['README.md', ...docs];
const linked = [...sampled, 'SIMULATION.md', 'BENCHMARKS.md'].filter((f) => fs.existsSync(path.join(root, f)));

readSettings();
for (const file of linked) {
  const p = page(file);
  for (const [line, target] of linksOf(p)) checkLink(p, line, target);
}
for (const file of sampled) {
  const p = page(file);
  for (const b of p.blocks) await checkBlock(b);
  for (const m of p.prose.filter(([, l]) => MARKER.test(l))) {
    const next = p.lines.slice(m[0]).find((l) => !MARKER.test(l));
    if (next === undefined || !FENCE.test(next)) fail(file, m[0], 'a sample/given/ignore marker must stand just above a code fence');
  }
}
// Each page of docs/ opens with its title and one line saying who it is for, and the README's
// map of the docs links it.
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
for (const file of docs) {
  const [title, , who] = page(file).lines;
  if (!/^# \S/.test(title ?? '') || !/^For \S/.test(who ?? '')) fail(file, 1, 'a page opens with "# Title", a blank line, and "For ...": who it is for');
  if (!readme.includes(`](${file})`)) fail('README.md', 1, `the map of the docs does not link ${file}`);
}
for (const want of doctested) {
  if (!fs.existsSync(path.join(root, want))) fail('src/lib.rs', 1, `#[cfg(doctest)] includes ${want}, which does not exist`);
}
if (!doctested.has('README.md')) fail('src/lib.rs', 1, 'README.md is not included as a doc test (#[cfg(doctest)])');
for (const source of TOML_SOURCES) {
  const text = fs.readFileSync(path.join(root, source), 'utf8');
  checkToml(source, 1, text);
  checkNames(source, 1, text.split('\n'));
}
checkTypeScript();

if (errors.length) {
  for (const e of errors) console.error(e);
  console.error(`docs-check: ${errors.length} problem${errors.length === 1 ? '' : 's'}`);
  process.exit(1);
}
const detail = Object.entries(kinds).sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${n} ${k}`).join(', ');
console.log(`docs-check: ${counts.links} links (${counts.anchors} anchors, ${counts.external} external) in ${linked.length} files, ${counts.samples} samples checked (${detail}) in ${sampled.length} files`);
