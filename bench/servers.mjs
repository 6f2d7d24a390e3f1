// Child process of `make bench`: a minimal upstream API and a minimal token endpoint on
// loopback, kept out of the load generator's process so they do not share its event loop.
// The token endpoint answers after TOKEN_DELAY_MS (a real IdP is not instant) and counts requests;
// a request with a DPoP proof gets a DPoP token (the proof is not checked: the cost is the point).
import http from 'node:http';
import crypto from 'node:crypto';

const ttl = Number(process.env.TOKEN_TTL ?? 3600);
const delay = Number(process.env.TOKEN_DELAY_MS ?? 100);
let tokenRequests = 0;

const upstream = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    // No token check: the pass-through variant sends none, and the point is the proxies' cost.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true,"items":[1,2,3]}');
  });
});

const token = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    tokenRequests += 1;
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ access_token: crypto.randomBytes(24).toString('base64url'), token_type: req.headers.dpop ? 'DPoP' : 'Bearer', expires_in: ttl }));
    }, delay);
  });
});

const listen = (s) => new Promise((r) => s.listen(0, '127.0.0.1', () => r(s.address().port)));
const [upstreamPort, tokenPort] = [await listen(upstream), await listen(token)];
process.send({ upstreamPort, tokenPort });
process.on('message', (m) => {
  if (m === 'count') process.send({ tokenRequests });
  if (m === 'reset') { tokenRequests = 0; process.send({ tokenRequests }); }
  if (m === 'exit') process.exit(0);
});
