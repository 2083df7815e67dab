// Self-test of the Liaison test IdP harness: starts server.mjs as a child
// process with temporary configs, exactly as the Rust integration tests will.

import assert from 'node:assert/strict';
import {
  createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign,
} from 'node:crypto';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';

import {
  baseConfig, basicAuth, clientCredentials, CookieJar, decodeJwt, getJson, runToExit,
  startServer, verifyJwt, writeTempJson,
} from '../support/test-helpers.mjs';

const REDIRECT_URI = 'http://127.0.0.1:8081/console/callback';
const RESOURCE = 'urn:liaison:audience:liaison';

describe('harness with RS256 (example agency met-police)', () => {
  let idp;

  before(async () => {
    idp = await startServer(baseConfig({ api_scopes: ['cases:read', 'cases:write'] }));
  });

  after(async () => {
    const { code, signal } = await idp.stop();
    // Clean shutdown on SIGTERM.
    assert.equal(code, 0, `exit code ${code} signal ${signal}; stderr:\n${idp.stderr()}`);
  });

  test('prints exactly one READY line with issuer and port', () => {
    assert.match(idp.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(idp.issuer, `http://127.0.0.1:${idp.port}`);
    assert.ok(idp.port > 0);
    assert.equal(idp.stdout(), `READY ${JSON.stringify({ issuer: idp.issuer, port: idp.port })}\n`);
  });

  test('discovery document', async () => {
    const { status, body } = await getJson(`${idp.issuer}/.well-known/openid-configuration`);
    assert.equal(status, 200);
    assert.equal(body.issuer, idp.issuer);
    assert.equal(body.jwks_uri, `${idp.issuer}/jwks`);
    assert.equal(body.token_endpoint, `${idp.issuer}/token`);
    assert.equal(body.authorization_endpoint, `${idp.issuer}/auth`);
    assert.equal(body.userinfo_endpoint, `${idp.issuer}/me`);
    assert.ok(body.grant_types_supported.includes('client_credentials'));
    assert.ok(body.grant_types_supported.includes('authorization_code'));
    assert.ok(!body.grant_types_supported.includes('implicit'));
    assert.deepEqual(body.response_types_supported, ['code']);
    assert.deepEqual(body.code_challenge_methods_supported, ['S256']);
    assert.deepEqual(body.id_token_signing_alg_values_supported, ['RS256']);
    for (const scope of ['openid', 'profile', 'email', 'liaison']) assert.ok(body.scopes_supported.includes(scope), scope);
  });

  test('client_credentials yields a signed JWT access token with configured claims', async () => {
    const { status, body } = await clientCredentials(idp.issuer, 'mash-system', 'mash-system-test-secret');
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.expires_in, 300);

    const jwks = (await getJson(`${idp.issuer}/jwks`)).body;
    assert.ok(jwks.keys.every((k) => k.d === undefined), 'JWKS must not leak private members');
    const { header, payload } = decodeJwt(body.access_token);
    assert.equal(header.alg, 'RS256');
    assert.equal(header.typ, 'at+jwt');
    assert.ok(jwks.keys.some((k) => k.kid === header.kid), 'header kid is published');
    verifyJwt(body.access_token, jwks);

    assert.equal(payload.iss, idp.issuer);
    assert.equal(payload.aud, 'liaison');
    assert.equal(payload.sub, 'mash-system');
    assert.equal(payload.client_id, 'mash-system');
    assert.equal(payload.exp - payload.iat, 300);
    assert.equal(payload.nbf, payload.iat);
    assert.ok(Math.abs(payload.iat - Date.now() / 1000) < 30);
    assert.equal(typeof payload.jti, 'string');
    assert.equal(payload.agency, 'met-police');
    assert.deepEqual(payload.roles, ['social-worker']);
    assert.equal(payload.team, 'MASH');
    assert.equal(payload.vetting, 'NPPV2');
    assert.equal(payload.name, 'MASH System');
  });

  test('requested scopes are limited to api_scopes', async () => {
    const { status, body } = await clientCredentials(idp.issuer, 'mash-system', 'mash-system-test-secret', { scope: 'cases:read bogus openid' });
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.scope, 'cases:read');
    assert.equal(decodeJwt(body.access_token).payload.scope, 'cases:read');
    const plain = await clientCredentials(idp.issuer, 'mash-system', 'mash-system-test-secret');
    assert.equal(decodeJwt(plain.body.access_token).payload.scope, undefined);
  });

  test('client_secret_post also works', async () => {
    const { status, body } = await getJson(`${idp.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'mash-system', client_secret: 'mash-system-test-secret' }),
    });
    // oidc-provider treats client_secret_basic and client_secret_post as
    // interchangeable for a client registered with either.
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(decodeJwt(body.access_token).payload.sub, 'mash-system');
  });

  test('wrong secret, unknown client and wrong grant are refused', async () => {
    let r = await clientCredentials(idp.issuer, 'mash-system', 'not-the-secret');
    assert.equal(r.status, 401);
    assert.equal(r.body.error, 'invalid_client');

    r = await clientCredentials(idp.issuer, 'no-such-client', 'x');
    assert.equal(r.status, 401);
    assert.equal(r.body.error, 'invalid_client');

    r = await clientCredentials(idp.issuer, 'dpo-console', 'dpo-console-test-secret');
    assert.equal(r.status, 400);
    assert.equal(r.body.error, 'invalid_request');
    assert.match(r.body.error_description, /grant type is not allowed for this client/);

    r = await clientCredentials(idp.issuer, 'mash-system', 'mash-system-test-secret', { resource: 'https://elsewhere.example/' });
    assert.equal(r.status, 400);
    assert.equal(r.body.error, 'invalid_target');
  });

  test('test-control endpoints reject wrong methods and unknown paths', async () => {
    assert.equal((await fetch(`${idp.issuer}/__test/rotate`)).status, 405);
    assert.equal((await fetch(`${idp.issuer}/__test/keys`, { method: 'POST' })).status, 405);
    assert.equal((await fetch(`${idp.issuer}/__test/nope`)).status, 404);
  });

  test('rotate publishes a new active key, retire drops the old ones', async () => {
    const before = (await getJson(`${idp.issuer}/jwks`)).body;
    const oldToken = (await clientCredentials(idp.issuer, 'mash-system', 'mash-system-test-secret')).body.access_token;
    const oldKid = decodeJwt(oldToken).header.kid;

    const rotated = await getJson(`${idp.issuer}/__test/rotate`, { method: 'POST' });
    assert.equal(rotated.status, 200);
    assert.equal(typeof rotated.body.kid, 'string');
    assert.deepEqual(rotated.body.previous, before.keys.map((k) => k.kid));
    assert.ok(!rotated.body.previous.includes(rotated.body.kid));

    const { body: afterRotate, headers } = await getJson(`${idp.issuer}/jwks`);
    assert.equal(headers.get('cache-control'), 'no-store');
    assert.deepEqual(afterRotate.keys.map((k) => k.kid).sort(), [rotated.body.kid, ...rotated.body.previous].sort());
    // Tokens from before the rotation still verify against the published set.
    verifyJwt(oldToken, afterRotate);

    // New tokens use the new key; issuer and port are unchanged.
    const newToken = (await clientCredentials(idp.issuer, 'mash-system', 'mash-system-test-secret')).body.access_token;
    const decoded = decodeJwt(newToken);
    assert.equal(decoded.header.kid, rotated.body.kid);
    assert.equal(decoded.payload.iss, idp.issuer);
    verifyJwt(newToken, afterRotate);
    const disco = (await getJson(`${idp.issuer}/.well-known/openid-configuration`)).body;
    assert.equal(disco.issuer, idp.issuer);

    // Private keys for hostile-token tests; active key first.
    const keys = await getJson(`${idp.issuer}/__test/keys`);
    assert.equal(keys.headers.get('x-active-kid'), rotated.body.kid);
    assert.equal(keys.body.keys[0].kid, rotated.body.kid);
    assert.ok(keys.body.keys.every((k) => typeof k.d === 'string'));

    const retired = await getJson(`${idp.issuer}/__test/retire`, { method: 'POST' });
    assert.equal(retired.status, 200);
    assert.deepEqual(retired.body.kids, [rotated.body.kid]);
    assert.ok(retired.body.retired.includes(oldKid));
    const afterRetire = (await getJson(`${idp.issuer}/jwks`)).body;
    assert.deepEqual(afterRetire.keys.map((k) => k.kid), [rotated.body.kid]);
    assert.throws(() => verifyJwt(oldToken, afterRetire), /not in JWKS/);
    verifyJwt(newToken, afterRetire);
  });

  test('concurrent rotations are serialised and lose no key', async () => {
    const before = (await getJson(`${idp.issuer}/jwks`)).body.keys.map((k) => k.kid);
    const results = await Promise.all([1, 2, 3].map(() => getJson(`${idp.issuer}/__test/rotate`, { method: 'POST' })));
    const kids = results.map((r) => r.body.kid);
    assert.equal(new Set(kids).size, 3);
    const after = (await getJson(`${idp.issuer}/jwks`)).body.keys.map((k) => k.kid);
    assert.deepEqual(after.sort(), [...before, ...kids].sort());
    const retired = await getJson(`${idp.issuer}/__test/retire`, { method: 'POST' });
    assert.equal(retired.body.kids.length, 1);
    assert.ok(kids.includes(retired.body.kids[0]));
  });

  test('/__test/keys?format=pem lets a test forge tokens with the real key', async () => {
    const { status, headers, body } = await getJson(`${idp.issuer}/__test/keys?format=pem`);
    assert.equal(status, 200);
    const [active] = body.keys;
    assert.equal(active.kid, headers.get('x-active-kid'));
    assert.equal(active.alg, 'RS256');
    assert.match(active.private_pem, /^-----BEGIN RSA PRIVATE KEY-----/);
    assert.match(active.public_pem, /^-----BEGIN PUBLIC KEY-----/);

    // A hostile token: genuine signature, wrong audience.
    const now = Math.floor(Date.now() / 1000);
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const input = `${enc({ alg: 'RS256', typ: 'at+jwt', kid: active.kid })}.${enc({
      iss: idp.issuer, aud: 'not-liaison', sub: 'mash-system', iat: now, exp: now + 60,
    })}`;
    const forged = `${input}.${sign('sha256', Buffer.from(input), createPrivateKey(active.private_pem)).toString('base64url')}`;
    verifyJwt(forged, (await getJson(`${idp.issuer}/jwks`)).body);
    assert.equal((await fetch(`${idp.issuer}/__test/keys?format=der`)).status, 400);
  });

  test('authorization code + PKCE login flow survives a key rotation mid-flow', async () => {
    const jar = new CookieJar();
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const auth = new URL(`${idp.issuer}/auth`);
    auth.search = new URLSearchParams({
      client_id: 'dpo-console',
      response_type: 'code',
      scope: 'openid profile email liaison',
      redirect_uri: REDIRECT_URI,
      state: 'st-123',
      nonce: 'n-456',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });

    let res = await jar.fetch(auth.href);
    assert.equal(res.status, 303);
    const interactionUrl = new URL(res.headers.get('location'), idp.issuer).href;
    assert.match(interactionUrl, /\/interaction\/[^/]+$/);

    res = await jar.fetch(interactionUrl);
    assert.equal(res.status, 200);
    const page = await res.text();
    assert.match(page, /<form id="login-form" method="post" action="\/interaction\/[^"]+\/login"/);
    assert.match(page, /name="login"/);
    assert.match(page, /name="password"/);

    // Keys change while the user is on the login page.
    const rotated = (await getJson(`${idp.issuer}/__test/rotate`, { method: 'POST' })).body;

    const post = (login, password) => jar.fetch(`${interactionUrl}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ login, password }),
    });
    res = await post('u-1001', 'wrong password');
    assert.equal(res.status, 401);
    assert.match(await res.text(), /id="login-error"/);
    res = await post('u-9999', 'correct horse battery staple');
    assert.equal(res.status, 401);

    res = await post('u-1001', 'correct horse battery staple');
    assert.equal(res.status, 303);
    // resume -> consent interaction (auto-granted) -> resume -> redirect_uri
    let location = res.headers.get('location');
    for (let hops = 0; hops < 6 && !location.startsWith(REDIRECT_URI); hops += 1) {
      res = await jar.fetch(new URL(location, idp.issuer).href);
      assert.equal(res.status, 303, `hop ${hops} to ${location}`);
      location = res.headers.get('location');
    }
    const callback = new URL(location);
    assert.equal(callback.origin + callback.pathname, REDIRECT_URI);
    assert.equal(callback.searchParams.get('state'), 'st-123');
    assert.equal(callback.searchParams.get('iss'), idp.issuer);
    const code = callback.searchParams.get('code');
    assert.ok(code, `no code in ${location}`);

    const tokenRequest = (params) => getJson(`${idp.issuer}/token`, {
      method: 'POST',
      headers: { authorization: basicAuth('dpo-console', 'dpo-console-test-secret'), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params),
    });

    // A wrong verifier is refused (PKCE enforced)...
    const bad = await tokenRequest({
      grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: randomBytes(32).toString('base64url'),
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error, 'invalid_grant');

    // ...and consumes the code, so run a second, silent flow (SSO session).
    res = await jar.fetch(auth.href);
    location = res.headers.get('location');
    for (let hops = 0; hops < 6 && !location.startsWith(REDIRECT_URI); hops += 1) {
      res = await jar.fetch(new URL(location, idp.issuer).href);
      location = res.headers.get('location');
    }
    const code2 = new URL(location).searchParams.get('code');
    assert.ok(code2, `no code in ${location}`);

    const tokens = await tokenRequest({
      grant_type: 'authorization_code', code: code2, redirect_uri: REDIRECT_URI, code_verifier: verifier,
    });
    assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
    assert.ok(tokens.body.refresh_token, 'refresh token issued');

    const jwks = (await getJson(`${idp.issuer}/jwks`)).body;
    verifyJwt(tokens.body.id_token, jwks);
    const idToken = decodeJwt(tokens.body.id_token);
    assert.equal(idToken.header.kid, rotated.kid, 'ID token signed with the active key');
    assert.equal(idToken.payload.iss, idp.issuer);
    assert.equal(idToken.payload.aud, 'dpo-console');
    assert.equal(idToken.payload.sub, 'u-1001');
    assert.equal(idToken.payload.nonce, 'n-456');
    assert.equal(idToken.payload.name, 'Dana Okafor');
    assert.equal(idToken.payload.email, 'dana.okafor@met-police.test');
    assert.deepEqual(idToken.payload.roles, ['dpo']);
    assert.equal(idToken.payload.agency, 'met-police');

    const userinfo = await getJson(`${idp.issuer}/me`, { headers: { authorization: `Bearer ${tokens.body.access_token}` } });
    assert.equal(userinfo.status, 200);
    assert.deepEqual(userinfo.body, {
      sub: 'u-1001', name: 'Dana Okafor', email: 'dana.okafor@met-police.test', agency: 'met-police', roles: ['dpo'],
    });

    // A JWT for the Liaison API on behalf of the user: refresh naming the resource.
    const api = await tokenRequest({
      grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, resource: RESOURCE,
    });
    assert.equal(api.status, 200, JSON.stringify(api.body));
    verifyJwt(api.body.access_token, jwks);
    const at = decodeJwt(api.body.access_token);
    assert.equal(at.header.kid, rotated.kid);
    assert.equal(at.payload.aud, 'liaison');
    assert.equal(at.payload.sub, 'u-1001');
    assert.equal(at.payload.client_id, 'dpo-console');
    assert.deepEqual(at.payload.roles, ['dpo']);
    assert.equal(at.payload.agency, 'met-police');
  });

  test('authorization request without PKCE is rejected', async () => {
    const jar = new CookieJar();
    const auth = new URL(`${idp.issuer}/auth`);
    auth.search = new URLSearchParams({
      client_id: 'dpo-console', response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, state: 's',
    });
    const res = await jar.fetch(auth.href);
    assert.equal(res.status, 303);
    const location = new URL(res.headers.get('location'));
    assert.equal(location.origin + location.pathname, REDIRECT_URI);
    assert.equal(location.searchParams.get('error'), 'invalid_request');
  });
});

describe('signing algorithms', () => {
  for (const alg of ['PS256', 'ES256', 'EdDSA']) {
    test(`${alg} tokens verify against the JWKS`, async () => {
      const idp = await startServer(baseConfig({ signing_alg: alg, agency: 'leeds-council', access_token_ttl_seconds: 60 }));
      try {
        const { status, body } = await clientCredentials(idp.issuer, 'mash-system', 'mash-system-test-secret');
        assert.equal(status, 200, JSON.stringify(body));
        const jwks = (await getJson(`${idp.issuer}/jwks`)).body;
        assert.equal(jwks.keys.length, 1);
        assert.equal(jwks.keys[0].alg, alg);
        const { header, payload } = decodeJwt(body.access_token);
        assert.equal(header.alg, alg);
        verifyJwt(body.access_token, jwks);
        assert.equal(payload.agency, 'leeds-council');
        assert.equal(payload.exp - payload.iat, 60);
      } finally {
        await idp.stop();
      }
    });
  }
});

describe('start-up options', () => {
  test('--keys loads a private JWKS and --port overrides the config port', async () => {
    const jwk = (kid) => ({ ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }), kid });
    const keysFile = writeTempJson({ keys: [jwk('file-key-old'), jwk('file-key-active')] });
    const port = await new Promise((resolve, reject) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port: p } = probe.address();
        probe.close(() => resolve(p));
      }).on('error', reject);
    });

    const idp = await startServer(baseConfig({ signing_alg: 'ES256', port: 1 }), ['--keys', keysFile, '--port', String(port)]);
    try {
      assert.equal(idp.port, port);
      assert.equal(idp.issuer, `http://127.0.0.1:${port}`);
      const jwks = (await getJson(`${idp.issuer}/jwks`)).body;
      assert.deepEqual(jwks.keys.map((k) => k.kid).sort(), ['file-key-active', 'file-key-old']);
      const { body } = await clientCredentials(idp.issuer, 'mash-system', 'mash-system-test-secret');
      // The first key able to sign ES256 is the active one.
      assert.equal(decodeJwt(body.access_token).header.kid, 'file-key-old');
      verifyJwt(body.access_token, jwks);
    } finally {
      await idp.stop();
    }
  });

  test('a port already in use exits 1 with a clear message', async () => {
    const idp = await startServer(baseConfig());
    try {
      const { code, stdout, stderr } = await runToExit(['--config', writeTempJson(baseConfig()), '--port', String(idp.port)]);
      assert.equal(code, 1);
      assert.equal(stdout, '');
      assert.match(stderr, /EADDRINUSE/);
    } finally {
      await idp.stop();
    }
  });

  test('SIGINT exits cleanly', async () => {
    const idp = await startServer(baseConfig());
    idp.child.kill('SIGINT');
    const { code } = await idp.exited;
    assert.equal(code, 0);
  });

  const badConfigs = [
    ['missing --config', null, [], /--config/],
    ['unreadable file', null, ['--config', '/nonexistent/idp.json'], /cannot read config file/],
    ['invalid JSON', '{"port": 0,', [], /not valid JSON/],
    ['bad signing_alg', baseConfig({ signing_alg: 'HS256' }), [], /signing_alg must be one of/],
    ['missing audience', baseConfig({ audience: undefined }), [], /audience must be a non-empty string/],
    ['client without secret', baseConfig({ clients: [{ client_id: 'x', grant_types: ['client_credentials'] }] }), [], /clients\[0\]\.client_secret/],
    ['code client without redirect_uris', baseConfig({ clients: [{ client_id: 'x', client_secret: 's', grant_types: ['authorization_code'] }] }), [], /clients\[0\]\.redirect_uris/],
    ['reserved claim', baseConfig({ users: [{ sub: 'u', password: 'p', claims: { iss: 'evil' } }] }), [], /users\[0\]\.claims\.iss is a reserved claim/],
    ['unknown field', baseConfig({ prot: 1 }), [], /config\.prot is not a recognised field/],
    ['bad --port', baseConfig(), ['--port', 'abc'], /--port must be an integer/],
    ['keys file without a usable key', baseConfig(), ['--keys', 'RSA_ONLY'], /has no key that can sign with signing_alg ES256/],
  ];
  for (const [name, config, extra, expected] of badConfigs) {
    test(`bad start-up input exits 2: ${name}`, async () => {
      let args = [...extra];
      if (config !== null) {
        let cfg = config;
        if (extra.includes('RSA_ONLY')) {
          // An RSA-only key file cannot serve an ES256 config.
          cfg = { ...config, signing_alg: 'ES256' };
          const rsa = { ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'r1' };
          args = args.map((a) => (a === 'RSA_ONLY' ? writeTempJson({ keys: [rsa] }) : a));
        }
        args = ['--config', writeTempJson(cfg), ...args];
      }
      const { code, stdout, stderr } = await runToExit(args);
      assert.equal(code, 2, `stderr:\n${stderr}`);
      assert.equal(stdout, '', 'nothing on stdout when start-up fails');
      assert.match(stderr, expected);
    });
  }
});
