// `make dev`: the proxy as a user runs it, in `wrangler dev` (the pinned wrangler, port 8787),
// in front of the demo's authorization server (oidc-provider, 127.0.0.1:9100) and protected API
// (127.0.0.1:9200). Settings come from .dev.vars; without one, .dev.vars.example is copied there.
// Ctrl-C stops all three.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startIdp, API_AUDIENCE } from '../e2e/support/idp.mjs';
import { startApi } from '../e2e/support/api.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const port = Number(process.env.PORT ?? 8787);
const devVars = path.join(root, '.dev.vars');

const idp = await startIdp({ port: 9100 });
const api = await startApi({ issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: API_AUDIENCE, port: 9200 });
console.log(`authorization server  ${idp.issuer}  (oidc-provider)`);
console.log(`protected API         ${api.origin}`);
if (!fs.existsSync(devVars)) {
  fs.copyFileSync(path.join(root, '.dev.vars.example'), devVars);
  console.log('.dev.vars            copied from .dev.vars.example');
} else {
  console.log('.dev.vars            yours, as it is (.dev.vars.example has the demo\'s settings)');
}
console.log(`then: curl -i http://127.0.0.1:${port}/things   (token requests so far are printed as they happen)\n`);

let seen = 0;
const counter = setInterval(() => {
  if (idp.tokenRequests !== seen) {
    seen = idp.tokenRequests;
    console.log(`[dev] token endpoint requests: ${seen}`);
  }
}, 500);
const wrangler = spawn(path.join(root, 'node_modules/.bin/wrangler'),
  ['dev', '--ip', '127.0.0.1', '--port', String(port), '--show-interactive-dev-session=false'],
  { cwd: root, stdio: 'inherit' });
const stop = async (code) => {
  clearInterval(counter);
  wrangler.kill('SIGINT');
  await api.close();
  await idp.close();
  process.exit(code);
};
process.on('SIGINT', () => stop(0));
wrangler.on('exit', (code) => stop(code ?? 0));
