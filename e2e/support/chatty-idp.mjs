// A hostile or chatty token endpoint (not a real authorization server): it echoes what it was
// sent in every encoding, drips its body, sends huge headers, absurd Retry-After values and
// unusable lifetimes, so the suite can check what the proxy lets through. And a plain upstream
// that records every request it gets.
import http from 'node:http';

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

/** Every encoding of `text` a server might echo: raw, percent-encoded (both hex cases, `+` or
 *  `%20`), JSON-escaped, and base64 in every alphabet. */
export function encodings(text) {
  const form = new URLSearchParams({ x: text }).toString().slice(2);
  const component = encodeURIComponent(text);
  const lower = (s) => s.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
  const b64 = Buffer.from(text).toString('base64');
  return [
    text, form, lower(form), component, lower(component), form.replace(/\+/g, '%20'),
    JSON.stringify(text).slice(1, -1), b64, b64.replace(/=+$/, ''),
    Buffer.from(text).toString('base64url'), b64.replace(/\+/g, '-').replace(/\//g, '_'),
  ];
}

/**
 * Starts the endpoint. `setMode(mode)`: 'echo' (400 with everything it got, in every encoding,
 * in `error_description` and in a custom `error` code), 'huge_header' (a 200 whose one header is
 * 60 KB), { drip: ms } (a 200 body sent one byte every `ms`), { retryAfter: value } (503),
 * { token: body, delayMs } (a 200 with `body`, after `delayMs`).
 */
export async function startChattyIdp() {
  const state = { mode: 'echo', requests: 0, issued: [], received: [] };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      state.requests += 1;
      state.received.push({ authorization: req.headers.authorization ?? null, body });
      const mode = state.mode;
      if (mode === 'echo') {
        const form = new URLSearchParams(body);
        const parts = [req.headers.authorization ?? '', body, ...[...form.values()]];
        const basic = (req.headers.authorization ?? '').replace(/^Basic /, '');
        if (basic) parts.push(Buffer.from(basic, 'base64').toString('utf8'));
        const echoed = parts.flatMap(encodings).join(' | ');
        res.writeHead(400, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({
          error: `invalid_client ${parts[0]} ${form.get('client_assertion') ?? ''}`,
          error_description: `you sent ${echoed}`,
        }));
      }
      if (mode === 'huge_header') {
        res.writeHead(200, { 'content-type': 'application/json', 'x-padding': 'a'.repeat(60_000) });
        return res.end('{"access_token":"huge-header-token","token_type":"Bearer","expires_in":3600}');
      }
      if (mode.drip) {
        res.writeHead(200, { 'content-type': 'application/json' });
        const text = '{"access_token":"dripped-token","token_type":"Bearer","expires_in":3600}';
        let i = 0;
        const timer = setInterval(() => {
          if (res.destroyed || i >= text.length) { clearInterval(timer); return res.end(); }
          res.write(text[i]);
          i += 1;
        }, mode.drip);
        return undefined;
      }
      if (mode.retryAfter !== undefined) {
        res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': String(mode.retryAfter) });
        return res.end('down');
      }
      if (mode.token !== undefined) {
        return setTimeout(() => {
          state.issued.push({ body: mode.token, at: Date.now() });
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(mode.token);
        }, mode.delayMs ?? 0);
      }
      throw new Error(`unknown mode ${JSON.stringify(mode)}`);
    });
  });
  const port = await listen(server);
  return {
    tokenUrl: `http://127.0.0.1:${port}/token`,
    get requests() { return state.requests; },
    get issued() { return state.issued; },
    /** The Authorization header and form body of every token request. */
    get received() { return state.received; },
    setMode(m) { state.mode = m; state.requests = 0; },
    close() { server.closeAllConnections?.(); return new Promise((r) => server.close(r)); },
  };
}

/** An upstream that answers 200 to everything and records method, URL, headers, body, time. */
export async function startRecorder() {
  const seen = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks), at: Date.now() });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
    req.on('error', () => {});
  });
  const port = await listen(server);
  return {
    origin: `http://127.0.0.1:${port}`,
    seen,
    close() { server.closeAllConnections?.(); return new Promise((r) => server.close(r)); },
  };
}
