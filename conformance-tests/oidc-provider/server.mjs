#!/usr/bin/env node
// Liaison conformance-test OpenID Connect provider harness.
//
// DEVELOPMENT / TEST ONLY. It generates throw-away keys, keeps everything in
// memory, serves plain HTTP and exposes unauthenticated /__test/ endpoints that
// hand out its private keys. Never run it anywhere real data or real users are.
//
// Usage: node server.mjs --config FILE [--port N] [--keys JWKS_FILE]
//
// Protocol with the parent process (Rust tests): exactly one line on stdout,
//   READY {"issuer":"http://127.0.0.1:PORT","port":PORT}
// once it accepts requests; all diagnostics go to stderr. SIGTERM/SIGINT stop
// it with exit code 0. Bad arguments/config/keys exit with code 2, any other
// start-up failure (e.g. port in use) with code 1.

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { format, parseArgs } from 'node:util';

import { ConfigError, loadConfigFile } from './lib/config.mjs';
import { generateSigningKey, loadKeyFile, pemFor } from './lib/keys.mjs';
import { MemoryStore } from './lib/memory-adapter.mjs';
import { buildProvider, validateClients } from './lib/provider.mjs';
import { interactionHandler } from './lib/interactions.mjs';

// stdout is a machine-read channel carrying only the READY line. oidc-provider
// prints notices with console.info (stdout), so route every console method to
// stderr before it is loaded.
const toStderr = (...args) => process.stderr.write(`${format(...args)}\n`);
console.log = toStderr;
console.info = toStderr;
console.debug = toStderr;
const log = (msg) => toStderr(`[liaison-test-idp] ${msg}`);

function usageError(message) {
  throw new ConfigError(`${message}\nusage: node server.mjs --config FILE [--port N] [--keys JWKS_FILE]`);
}

function parseCli(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string' },
        port: { type: 'string' },
        keys: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    usageError(err.message);
  }
  if (!values.config) usageError('missing required --config FILE');
  let port;
  if (values.port !== undefined) {
    if (!/^\d+$/.test(values.port) || Number(values.port) > 65535) usageError(`--port must be an integer 0-65535 (got "${values.port}")`);
    port = Number(values.port);
  }
  return { configFile: values.config, port, keysFile: values.keys };
}

function sendJson(res, status, body, headers = {}) {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

async function main() {
  const cli = parseCli(process.argv.slice(2));
  const config = loadConfigFile(cli.configFile);
  if (cli.port !== undefined) config.port = cli.port;
  let keys = cli.keysFile ? loadKeyFile(cli.keysFile, config.signingAlg) : [generateSigningKey(config.signingAlg)];

  // Loaded only now so that its import-time notices hit the patched console.
  const oidc = await import('oidc-provider');

  const store = new MemoryStore();
  // Signing keys for the provider's cookies, shared by every Provider instance
  // so sessions and interactions survive key rotation.
  const cookieKeys = [randomBytes(32).toString('base64url')];

  let issuer;
  let provider;
  let providerCallback;
  // Builds a Provider for `nextKeys` and swaps it in. The HTTP server, issuer,
  // port, storage and cookie keys stay the same; only the keys change. If
  // building fails the previous Provider keeps serving.
  async function installProvider(nextKeys) {
    const next = buildProvider(oidc, {
      issuer, config, keys: nextKeys, store, cookieKeys, log,
    });
    await validateClients(next, config);
    provider = next;
    providerCallback = next.callback();
    keys = nextKeys;
  }

  // Rotate/retire read the current key list and then await a rebuild; run
  // them one at a time so concurrent calls cannot lose a key.
  let keyOperation = Promise.resolve();
  function serializeKeyOperation(fn) {
    const result = keyOperation.then(fn);
    keyOperation = result.catch(() => {});
    return result;
  }

  const handleInteraction = interactionHandler({ getProvider: () => provider, config, log });

  // Test-only control plane. Unauthenticated by design: it exists so Rust
  // tests can drive key rotation and forge tokens with the IdP's real keys.
  async function handleTestControl(req, res, url) {
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'POST /__test/rotate': {
        const body = await serializeKeyOperation(async () => {
          const previous = keys.map((k) => k.kid);
          const fresh = generateSigningKey(config.signingAlg);
          await installProvider([fresh, ...keys]);
          log(`rotated signing key: active ${fresh.kid}, still published ${previous.join(', ')}`);
          return { kid: fresh.kid, previous };
        });
        return sendJson(res, 200, body);
      }
      case 'POST /__test/retire': {
        const body = await serializeKeyOperation(async () => {
          const retired = keys.slice(1).map((k) => k.kid);
          await installProvider([keys[0]]);
          log(`retired keys: ${retired.join(', ') || '(none)'}`);
          return { kids: keys.map((k) => k.kid), retired };
        });
        return sendJson(res, 200, body);
      }
      case 'GET /__test/keys': {
        // Active signing key first (also named in X-Active-Kid).
        const headers = { 'X-Active-Kid': keys[0].kid };
        const format = url.searchParams.get('format') ?? 'jwk';
        if (format === 'jwk') return sendJson(res, 200, { keys }, headers);
        if (format === 'pem') return sendJson(res, 200, { keys: keys.map(pemFor) }, headers);
        return sendJson(res, 400, { error: 'invalid_request', error_description: 'format must be jwk or pem' });
      }
      default:
        if (['/__test/rotate', '/__test/retire', '/__test/keys'].includes(url.pathname)) {
          return sendJson(res, 405, { error: 'method_not_allowed', error_description: `${req.method} not allowed on ${url.pathname}` });
        }
        return sendJson(res, 404, { error: 'not_found', error_description: `no test endpoint ${url.pathname}` });
    }
  }

  const server = createServer((req, res) => {
    if (!provider) {
      // Only possible in the instant between listen() and READY.
      sendJson(res, 503, { error: 'starting' });
      return;
    }
    let url;
    try {
      url = new URL(req.url, issuer);
    } catch {
      sendJson(res, 400, { error: 'invalid_request', error_description: 'bad request target' });
      return;
    }
    const fail = (err) => {
      log(`unhandled error on ${req.method} ${url.pathname}: ${err.stack ?? err}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: String(err.message ?? err) });
      else res.destroy();
    };
    if (url.pathname.startsWith('/__test/')) {
      handleTestControl(req, res, url).catch(fail);
    } else if (url.pathname.startsWith('/interaction/')) {
      handleInteraction(req, res, url).catch(fail);
    } else {
      if (url.pathname === '/jwks') {
        // Keys change at runtime (rotate/retire); stop HTTP caches from
        // hiding that from JWKS consumers.
        res.setHeader('Cache-Control', 'no-store');
      }
      providerCallback(req, res);
    }
  });
  // Short keep-alive so shutdown is not held up by idle client connections.
  server.keepAliveTimeout = 2000;

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address();
  const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  issuer = `http://${hostForUrl}:${port}`;

  try {
    await installProvider(keys);
  } catch (err) {
    server.close();
    // Anything oidc-provider rejects at this point comes from the config.
    throw new ConfigError(err.message);
  }
  server.on('error', (err) => log(`http server error: ${err.stack ?? err}`));

  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    log(`${signal} received, shutting down`);
    store.close();
    server.close(() => process.exit(0));
    // Idle keep-alive sockets would otherwise delay close().
    server.closeIdleConnections();
    // Never hang a test run: force exit if something still lingers.
    setTimeout(() => {
      server.closeAllConnections();
      process.exit(0);
    }, 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  log(`agency ${config.agency}: issuer ${issuer}, audience ${config.audience}, resource ${config.resourceIndicator}, `
    + `alg ${config.signingAlg}, active kid ${keys[0].kid}, published kids ${keys.map((k) => k.kid).join(', ')}`);
  process.stdout.write(`READY ${JSON.stringify({ issuer, port })}\n`);
}

main().catch((err) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`liaison-test-idp: configuration error: ${err.message}\n`);
    process.exit(2);
  }
  // System errors (EADDRINUSE, EACCES, ...) are self-explanatory; show the
  // stack only for unexpected failures.
  process.stderr.write(`liaison-test-idp: failed to start: ${err.code ? err.message : (err.stack ?? err)}\n`);
  process.exit(1);
});
