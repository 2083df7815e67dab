// Loading and validation of the harness configuration file.
//
// Every problem is reported as a ConfigError whose message names the offending
// field, so that a Rust test that fed the harness a bad file sees a useful
// message on stderr (and exit code 2) instead of a stack trace from deep inside
// oidc-provider.

import { readFileSync } from 'node:fs';

export class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConfigError';
  }
}

export const SIGNING_ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA'];

const GRANT_TYPES = new Set(['client_credentials', 'authorization_code', 'refresh_token']);
const AUTH_METHODS = new Set(['client_secret_basic', 'client_secret_post', 'none']);

// Claims the harness or oidc-provider set itself. Allowing them in configured
// `claims` would either be silently overwritten by oidc-provider or let a test
// config forge protocol-level claims, so they are rejected up front.
const RESERVED_CLAIMS = new Set([
  'iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'client_id', 'scope', 'cnf',
  'azp', 'auth_time', 'nonce', 'acr', 'amr', 'sid', 'at_hash', 'c_hash', 's_hash',
  'authorization_details',
]);

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const nonEmptyString = (v) => typeof v === 'string' && v.length > 0;

function fail(path, expected) {
  throw new ConfigError(`${path} ${expected}`);
}

function checkKeys(obj, allowed, path) {
  for (const key of Object.keys(obj)) {
    if (!allowed.has(key)) fail(`${path}.${key}`, 'is not a recognised field (check for a typo)');
  }
}

function checkClaims(claims, path) {
  if (claims === undefined) return {};
  if (!isObject(claims)) fail(path, 'must be an object of claim name -> JSON value');
  for (const name of Object.keys(claims)) {
    if (RESERVED_CLAIMS.has(name)) fail(`${path}.${name}`, 'is a reserved claim set by the provider and cannot be configured');
  }
  return structuredClone(claims);
}

function checkStringArray(value, path, { nonEmpty = false } = {}) {
  if (!Array.isArray(value) || !value.every(nonEmptyString)) fail(path, 'must be an array of non-empty strings');
  if (nonEmpty && value.length === 0) fail(path, 'must not be empty');
  return [...value];
}

function checkUri(value, path) {
  if (!nonEmptyString(value) || !URL.canParse(value)) fail(path, 'must be an absolute URI');
  if (value.includes('#')) fail(path, 'must not contain a fragment');
  return value;
}

// Resource indicators (RFC 8707) must be absolute URIs, but Liaison audiences
// are short names like "liaison". Derive a stable URN unless the audience is
// already a URI or the config names one explicitly.
function defaultResourceIndicator(audience) {
  return URL.canParse(audience) ? audience : `urn:liaison:audience:${encodeURIComponent(audience)}`;
}

function validateClient(raw, i) {
  const path = `clients[${i}]`;
  if (!isObject(raw)) fail(path, 'must be an object');
  checkKeys(raw, new Set([
    'client_id', 'client_secret', 'client_name', 'grant_types', 'redirect_uris',
    'post_logout_redirect_uris', 'token_endpoint_auth_method', 'scope', 'claims',
  ]), path);

  if (!nonEmptyString(raw.client_id)) fail(`${path}.client_id`, 'must be a non-empty string');
  const grantTypes = checkStringArray(raw.grant_types, `${path}.grant_types`, { nonEmpty: true });
  for (const gt of grantTypes) {
    if (!GRANT_TYPES.has(gt)) fail(`${path}.grant_types`, `contains unsupported grant type "${gt}" (supported: ${[...GRANT_TYPES].join(', ')})`);
  }
  if (grantTypes.includes('refresh_token') && !grantTypes.includes('authorization_code')) {
    fail(`${path}.grant_types`, 'includes refresh_token without authorization_code (refresh tokens are only issued by the code flow)');
  }

  const authMethod = raw.token_endpoint_auth_method ?? 'client_secret_basic';
  if (!AUTH_METHODS.has(authMethod)) fail(`${path}.token_endpoint_auth_method`, `must be one of ${[...AUTH_METHODS].join(', ')}`);
  if (authMethod === 'none') {
    if (raw.client_secret !== undefined) fail(`${path}.client_secret`, 'must be omitted for a public client (token_endpoint_auth_method "none")');
    if (grantTypes.includes('client_credentials')) fail(`${path}.grant_types`, 'client_credentials needs a confidential client (a client_secret)');
  } else if (!nonEmptyString(raw.client_secret)) {
    fail(`${path}.client_secret`, 'must be a non-empty string');
  }

  const usesCode = grantTypes.includes('authorization_code');
  let redirectUris = [];
  if (usesCode) {
    redirectUris = checkStringArray(raw.redirect_uris, `${path}.redirect_uris`, { nonEmpty: true });
    redirectUris.forEach((u, j) => checkUri(u, `${path}.redirect_uris[${j}]`));
  } else if (raw.redirect_uris !== undefined) {
    fail(`${path}.redirect_uris`, 'only applies to clients with the authorization_code grant');
  }
  let postLogout;
  if (raw.post_logout_redirect_uris !== undefined) {
    postLogout = checkStringArray(raw.post_logout_redirect_uris, `${path}.post_logout_redirect_uris`);
    postLogout.forEach((u, j) => checkUri(u, `${path}.post_logout_redirect_uris[${j}]`));
  }
  if (raw.scope !== undefined && !nonEmptyString(raw.scope)) fail(`${path}.scope`, 'must be a space-separated string of scopes');
  if (raw.client_name !== undefined && !nonEmptyString(raw.client_name)) fail(`${path}.client_name`, 'must be a non-empty string');

  return {
    client_id: raw.client_id,
    client_secret: raw.client_secret,
    client_name: raw.client_name,
    grant_types: grantTypes,
    redirect_uris: redirectUris,
    post_logout_redirect_uris: postLogout,
    token_endpoint_auth_method: authMethod,
    scope: raw.scope,
    claims: checkClaims(raw.claims, `${path}.claims`),
  };
}

function validateUser(raw, i) {
  const path = `users[${i}]`;
  if (!isObject(raw)) fail(path, 'must be an object');
  checkKeys(raw, new Set(['sub', 'password', 'claims']), path);
  if (!nonEmptyString(raw.sub)) fail(`${path}.sub`, 'must be a non-empty string');
  if (!nonEmptyString(raw.password)) fail(`${path}.password`, 'must be a non-empty string');
  return { sub: raw.sub, password: raw.password, claims: checkClaims(raw.claims, `${path}.claims`) };
}

export function validateConfig(raw) {
  if (!isObject(raw)) fail('config', 'must be a JSON object');
  checkKeys(raw, new Set([
    'port', 'host', 'agency', 'audience', 'resource_indicator', 'api_scopes', 'signing_alg',
    'access_token_ttl_seconds', 'clients', 'users',
  ]), 'config');

  const port = raw.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail('port', 'must be an integer 0-65535 (0 picks a free port)');
  const host = raw.host ?? '127.0.0.1';
  if (!nonEmptyString(host)) fail('host', 'must be a non-empty string');
  if (!nonEmptyString(raw.agency)) fail('agency', 'must be a non-empty string (e.g. "met-police")');
  if (!nonEmptyString(raw.audience)) fail('audience', 'must be a non-empty string (e.g. "liaison")');
  const resourceIndicator = raw.resource_indicator === undefined
    ? defaultResourceIndicator(raw.audience)
    : checkUri(raw.resource_indicator, 'resource_indicator');
  const apiScopes = raw.api_scopes === undefined ? [] : checkStringArray(raw.api_scopes, 'api_scopes');
  for (const s of apiScopes) {
    if (/\s/.test(s)) fail('api_scopes', `entry "${s}" must not contain whitespace`);
  }
  const signingAlg = raw.signing_alg ?? 'RS256';
  if (!SIGNING_ALGS.includes(signingAlg)) fail('signing_alg', `must be one of ${SIGNING_ALGS.join(', ')} (got ${JSON.stringify(signingAlg)})`);
  const ttl = raw.access_token_ttl_seconds ?? 300;
  if (!Number.isSafeInteger(ttl) || ttl <= 0) fail('access_token_ttl_seconds', 'must be a positive integer');

  if (!Array.isArray(raw.clients) || raw.clients.length === 0) fail('clients', 'must be a non-empty array');
  const clients = raw.clients.map(validateClient);
  const seenClients = new Set();
  for (const c of clients) {
    if (seenClients.has(c.client_id)) fail('clients', `has duplicate client_id "${c.client_id}"`);
    seenClients.add(c.client_id);
  }

  if (raw.users !== undefined && !Array.isArray(raw.users)) fail('users', 'must be an array');
  const users = (raw.users ?? []).map(validateUser);
  const seenUsers = new Set();
  for (const u of users) {
    if (seenUsers.has(u.sub)) fail('users', `has duplicate sub "${u.sub}"`);
    seenUsers.add(u.sub);
  }
  if (clients.some((c) => c.grant_types.includes('authorization_code')) && users.length === 0) {
    fail('users', 'must contain at least one user when a client uses authorization_code');
  }

  return {
    port,
    host,
    agency: raw.agency,
    audience: raw.audience,
    resourceIndicator,
    apiScopes,
    signingAlg,
    accessTokenTtl: ttl,
    clients,
    users,
  };
}

export function loadConfigFile(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${err.message}`);
  }
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${err.message}`);
  }
  return validateConfig(raw);
}
