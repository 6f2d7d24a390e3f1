// What `make bench` and `make profile` build before they measure: the JS Workers bundled with
// esbuild, and the Rust pass-through reference built with worker-build like the proxy.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

/** `entry` bundled into bench/.build/ (ESM, minified); its path. */
export function bundle(entry) {
  const out = path.join(root, 'bench/.build', path.basename(entry));
  fs.mkdirSync(path.dirname(out), { recursive: true });
  execFileSync(path.join(root, 'node_modules/@esbuild/linux-x64/bin/esbuild'),
    [entry, '--bundle', '--format=esm', '--minify', `--outfile=${out}`], { stdio: 'ignore' });
  return out;
}

/** The Rust pass-through reference (bench/rust-passthrough), built into bench/.build/ with its
 *  own target dir (sharing the proxy's would mix two packages' build states); its directory.
 *  `ifMissing` skips the build when one is there. */
export function rustPassthrough({ ifMissing = false } = {}) {
  const out = path.join(root, 'bench/.build/rust-passthrough');
  if (ifMissing && fs.existsSync(path.join(out, 'index.js'))) return out;
  execFileSync('worker-build', ['--release', '--out-dir', out], {
    cwd: path.join(here, 'rust-passthrough'),
    env: { ...process.env, CARGO_TARGET_DIR: path.join(root, 'target/bench') },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return out;
}
