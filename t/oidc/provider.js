// A real OpenID provider (the oidc-provider package) on loopback for the
// control plane's OIDC tests (t/controlplane/test_oidc.py).  TEST ONLY.
//
//   node provider.js <client_id> <client_secret> <redirect_uri>
//
// prints "listening <port>" once it serves http://127.0.0.1:<port>, the
// issuer.  A login needs no browser: GET /auth?... redirects to
// /interaction/<uid>, and a POST there of login=<sub>&claims=<JSON> signs
// that account in with those claims and grants the scopes asked for.
//
// Test-only knobs, which no real provider has, under /__test/:
//   POST /__test/mode {"sign": KEY, "publish": [KEY...], "tamper": T}
//     KEY: "rs-a" (the provider's own key, the default), "rs-b", "rs-c"
//     (RSA), "es" (P-256); publish: the keys /jwks serves (default rs-a
//     and es); tamper: null, "nonce", "expired", "audience" or "none" (an
//     unsigned token, alg "none").  An ID token
//     signed with another key than rs-a, or tampered, is the provider's with
//     its claims changed and signed again here.
//   GET /__test/stats -> {"jwksFetches": N}
import crypto from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const [clientId, clientSecret, redirectUri] = process.argv.slice(2);

function newKey(kid, type) {
  const pair = type === 'ec'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const alg = type === 'ec' ? 'ES256' : 'RS256';
  return {
    kid,
    alg,
    privateKey: pair.privateKey,
    privateJwk: { ...pair.privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' },
    publicJwk: { ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' },
  };
}

const keys = {
  'rs-a': newKey('key-a', 'rsa'),
  'rs-b': newKey('key-b', 'rsa'),
  'rs-c': newKey('key-c', 'rsa'),
  es: newKey('key-es', 'ec'),
};
let mode = { sign: 'rs-a', publish: ['rs-a', 'es'], tamper: null };
let jwksFetches = 0;
// the claims each account signs in with, as the last login gave them
const accounts = new Map();

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function sign(payload, key) {
  const header = { alg: key.alg, kid: key.kid, typ: 'JWT' };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const signature = crypto.sign('sha256', Buffer.from(input), key.alg === 'ES256'
    ? { key: key.privateKey, dsaEncoding: 'ieee-p1363' } : key.privateKey);
  return `${input}.${b64url(signature)}`;
}

function resign(idToken) {
  const payload = JSON.parse(Buffer.from(idToken.split('.')[1], 'base64url'));
  const now = Math.floor(Date.now() / 1000);
  if (mode.tamper === 'nonce') payload.nonce = 'not-the-nonce-of-this-login';
  if (mode.tamper === 'expired') { payload.iat = now - 7200; payload.exp = now - 3600; }
  if (mode.tamper === 'audience') { payload.aud = 'another-client'; delete payload.azp; }
  if (mode.tamper === 'none') {
    return `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64url(JSON.stringify(payload))}.`;
  }
  return sign(payload, keys[mode.sign]);
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [keys['rs-a'].privateJwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    // the claims of the scopes in the ID token, not only at userinfo
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, sub) {
      return { accountId: sub, claims: async () => ({ sub, ...(accounts.get(sub) || {}) }) };
    },
  });

  provider.use(async (ctx, next) => {
    if (ctx.path === '/jwks') {
      jwksFetches += 1;
      ctx.type = 'application/json';
      ctx.body = { keys: mode.publish.map((k) => keys[k].publicJwk) };
      return;
    }
    await next();
    if (ctx.path === '/token' && ctx.body && ctx.body.id_token
        && (mode.sign !== 'rs-a' || mode.tamper)) {
      ctx.body = { ...ctx.body, id_token: resign(ctx.body.id_token) };
    }
  });

  const callback = provider.callback();

  async function readBody(req) {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    return Buffer.concat(chunks).toString();
  }

  async function interaction(req, res) {
    const details = await provider.interactionDetails(req, res);
    if (req.method !== 'POST') {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<form method="post"><input name="login"><input name="claims"></form>');
      return;
    }
    const form = new URLSearchParams(await readBody(req));
    const sub = form.get('login');
    accounts.set(sub, JSON.parse(form.get('claims') || '{}'));
    const grant = new provider.Grant({ accountId: sub, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, {
      login: { accountId: sub },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
  }

  async function testKnobs(req, res) {
    if (req.url === '/__test/mode' && req.method === 'POST') {
      mode = { ...mode, ...JSON.parse(await readBody(req)) };
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ jwksFetches, mode }));
  }

  server.on('request', (req, res) => {
    const route = req.url.startsWith('/interaction/') ? interaction
      : req.url.startsWith('/__test/') ? testKnobs : null;
    if (route === null) {
      callback(req, res);
      return;
    }
    route(req, res).catch((err) => {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(String(err));
    });
  });
  console.log(`listening ${port}`);
});
