// Drops the wasm `name` custom section from the build (about 27 KiB of gzip). Panics stay
// readable: workers-rs's panic hook logs "Rust panic: panicked at <file>:<line>:<col>: <message>",
// which does not need function names; only the frames of a JS stack trace lose theirs.
// Usage: node scripts/strip-names.mjs build/index_bg.wasm
import { readFileSync, writeFileSync } from 'node:fs';

const path = process.argv[2];
const wasm = readFileSync(path);
if (wasm.readUInt32LE(0) !== 0x6d736100) throw new Error(`${path} is not a wasm module`);

function leb(buf, at) { // unsigned LEB128: [value, bytes read]
  let value = 0, shift = 0, i = at;
  for (;;) {
    const b = buf[i++];
    value += (b & 0x7f) * 2 ** shift;
    if (!(b & 0x80)) return [value, i - at];
    shift += 7;
  }
}

const kept = [wasm.subarray(0, 8)];
let at = 8, dropped = 0;
while (at < wasm.length) {
  const id = wasm[at];
  const [size, n] = leb(wasm, at + 1);
  const end = at + 1 + n + size;
  let drop = false;
  if (id === 0) {
    const [len, m] = leb(wasm, at + 1 + n);
    const name = wasm.subarray(at + 1 + n + m, at + 1 + n + m + len).toString('utf8');
    drop = name === 'name';
  }
  if (drop) dropped += end - at; else kept.push(wasm.subarray(at, end));
  at = end;
}
if (at !== wasm.length) throw new Error(`${path}: malformed section table`);
writeFileSync(path, Buffer.concat(kept));
console.log(`strip-names: ${path}: removed ${dropped} bytes of names`);
