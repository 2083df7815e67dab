// Helpers for the harness self-test (test/server.test.mjs). Kept outside
// test/ because `node --test test/` on Node 20 runs every .mjs file under test/.
// They start server.mjs as a child process the way Rust tests do (READY line on
// stdout), decode/verify JWTs with node:crypto only, and provide a tiny cookie
// jar for driving the browser login flow with fetch.

import { spawn } from 'node:child_process';
import { createPublicKey, constants, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SERVER = join(dirname(fileURLToPath(import.meta.url)), '..', 'server.mjs');
const READY_TIMEOUT_MS = 10_000;

const tmp = mkdtempSync(join(tmpdir(), 'liaison-idp-test-'));
// Temp configs and key files contain secrets; do not leave them behind.
process.once('exit', () => rmSync(tmp, { recursive: true, force: true }));
let fileCounter = 0;

export function writeTempJson(value) {
  fileCounter += 1;
  const file = join(tmp, `file-${fileCounter}.json`);
  writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
  return file;
}

export function baseConfig(overrides = {}) {
  return {
    port: 0,
    host: '127.0.0.1',
    agency: 'met-police',
    audience: 'liaison',
    signing_alg: 'RS256',
    access_token_ttl_seconds: 300,
    clients: [
      {
        client_id: 'mash-system',
        client_secret: 'mash-system-test-secret',
        grant_types: ['client_credentials'],
        claims: {
          roles: ['social-worker'], team: 'MASH', vetting: 'NPPV2', name: 'MASH System',
        },
      },
      {
        client_id: 'dpo-console',
        client_secret: 'dpo-console-test-secret',
        grant_types: ['authorization_code', 'refresh_token'],
        redirect_uris: ['http://127.0.0.1:8081/console/callback'],
      },
    ],
    users: [
      {
        sub: 'u-1001',
        password: 'correct horse battery staple',
        claims: { name: 'Dana Okafor', roles: ['dpo'], email: 'dana.okafor@met-police.test' },
      },
    ],
    ...overrides,
  };
}

// Starts server.mjs; resolves once the READY line arrives.
export function startServer(config, extraArgs = []) {
  const configFile = writeTempJson(config);
  const child = spawn(process.execPath, [SERVER, '--config', configFile, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no READY line within ${READY_TIMEOUT_MS} ms; stderr:\n${stderr}`));
    }, READY_TIMEOUT_MS);
    exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before READY; stderr:\n${stderr}`));
    });
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
      const line = stdout.split('\n').find((l) => l.startsWith('READY '));
      if (!line) return;
      clearTimeout(timer);
      const ready = JSON.parse(line.slice('READY '.length));
      resolve({
        ...ready,
        child,
        exited,
        stdout: () => stdout,
        stderr: () => stderr,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          return exited;
        },
      });
    });
  });
}

// Runs server.mjs to completion (for start-up failures).
export function runToExit(args, timeoutMs = 10_000) {
  const child = spawn(process.execPath, [SERVER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
  child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not exit within ${timeoutMs} ms; stderr:\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export function decodeJwt(token) {
  const [h, p] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')),
  };
}

// Verifies a compact JWS against a JWKS; returns the matching JWK or throws.
export function verifyJwt(token, jwks) {
  const [h, p, s] = token.split('.');
  const { header } = decodeJwt(token);
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Error(`kid ${header.kid} not in JWKS`);
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  const data = Buffer.from(`${h}.${p}`);
  const sig = Buffer.from(s, 'base64url');
  let ok;
  switch (header.alg) {
    case 'RS256': ok = verify('sha256', data, key, sig); break;
    case 'PS256': ok = verify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig); break;
    case 'ES256': ok = verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig); break;
    case 'EdDSA': ok = verify(null, data, key, sig); break;
    default: throw new Error(`unexpected alg ${header.alg}`);
  }
  if (!ok) throw new Error('signature does not verify');
  return jwk;
}

export function basicAuth(id, secret) {
  // RFC 6749 2.3.1: form-urlencode before base64.
  const enc = (v) => encodeURIComponent(v).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

export async function clientCredentials(issuer, id, secret, params = {}) {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { authorization: basicAuth(id, secret), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', ...params }),
  });
  return { status: res.status, body: await res.json() };
}

export async function getJson(url, init) {
  const res = await fetch(url, init);
  return { status: res.status, headers: res.headers, body: await res.json() };
}

// Path-aware cookie jar: enough for oidc-provider's _interaction, _session and
// _interaction_resume cookies (and their .sig companions).
export class CookieJar {
  #cookies = new Map(); // `${name};${path}` -> { name, value, path }

  store(res) {
    for (const header of res.headers.getSetCookie()) {
      const [pair, ...attrs] = header.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = '/';
      let expired = value === '';
      for (const attr of attrs) {
        const [k, v] = attr.split('=');
        if (k.toLowerCase() === 'path') path = v;
        if (k.toLowerCase() === 'expires' && Date.parse(v) <= Date.now()) expired = true;
        if (k.toLowerCase() === 'max-age' && Number(v) <= 0) expired = true;
      }
      const key = `${name};${path}`;
      if (expired) this.#cookies.delete(key);
      else this.#cookies.set(key, { name, value, path });
    }
  }

  header(url) {
    const { pathname } = new URL(url);
    return [...this.#cookies.values()]
      .filter((c) => pathname === c.path || pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  // fetch without following redirects, carrying and storing cookies.
  async fetch(url, init = {}) {
    const headers = new Headers(init.headers);
    const cookie = this.header(url);
    if (cookie) headers.set('cookie', cookie);
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    this.store(res);
    return res;
  }
}
