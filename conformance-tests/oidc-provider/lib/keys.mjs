// Signing key generation and loading.
//
// Keys are kept as private JWKs (plain objects) because that is what
// oidc-provider's `jwks` option takes and what GET /__test/keys hands to Rust
// tests. The first key in a KeySet is the active signing key; the others are
// still published so tokens signed before a rotation keep verifying.

import {
  createHash, createPrivateKey, createPublicKey, generateKeyPairSync,
} from 'node:crypto';
import { readFileSync } from 'node:fs';

import { ConfigError } from './config.mjs';

// RFC 7638 JWK thumbprint: the required public members in lexicographic order,
// no whitespace, SHA-256, base64url. Used as the `kid` so ids are unique and
// stable for a given key.
export function jwkThumbprint(jwk) {
  let members;
  switch (jwk.kty) {
    case 'RSA': members = { e: jwk.e, kty: jwk.kty, n: jwk.n }; break;
    case 'EC': members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }; break;
    case 'OKP': members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x }; break;
    default: throw new Error(`unsupported key type ${jwk.kty}`);
  }
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function keyPairFor(alg) {
  switch (alg) {
    // 2048-bit RSA keeps generation fast (tests rotate keys) while being the
    // size real IdPs use.
    case 'RS256':
    case 'PS256':
      return generateKeyPairSync('rsa', { modulusLength: 2048 });
    case 'ES256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'EdDSA':
      return generateKeyPairSync('ed25519');
    default:
      throw new Error(`unsupported signing alg ${alg}`);
  }
}

export function generateSigningKey(alg) {
  const { privateKey } = keyPairFor(alg);
  const jwk = privateKey.export({ format: 'jwk' });
  // `alg` and `use` pin the key to exactly one purpose, so oidc-provider never
  // picks it for another algorithm and JWKS consumers need not guess.
  return { ...jwk, kid: jwkThumbprint(jwk), alg, use: 'sig' };
}

// Whether a (private) JWK can produce signatures with `alg`.
export function keySupportsAlg(jwk, alg) {
  if (jwk.use !== undefined && jwk.use !== 'sig') return false;
  if (jwk.alg !== undefined && jwk.alg !== alg) return false;
  switch (alg) {
    case 'RS256':
    case 'PS256': return jwk.kty === 'RSA';
    case 'ES256': return jwk.kty === 'EC' && jwk.crv === 'P-256';
    case 'EdDSA': return jwk.kty === 'OKP' && jwk.crv === 'Ed25519';
    default: return false;
  }
}

const PRIVATE_MEMBERS = { RSA: ['d', 'p', 'q', 'dp', 'dq', 'qi'], EC: ['d'], OKP: ['d'] };

// Load a private JWKS from --keys FILE. The first key able to sign with
// `signingAlg` becomes the active key; every other key stays published.
export function loadKeyFile(file, signingAlg) {
  let raw;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`cannot load --keys file ${file}: ${err.message}`);
  }
  if (raw === null || typeof raw !== 'object' || !Array.isArray(raw.keys) || raw.keys.length === 0) {
    throw new ConfigError(`--keys file ${file} must be a JWK Set: {"keys": [ ...private JWKs... ]}`);
  }

  const keys = raw.keys.map((jwk, i) => {
    const where = `--keys file ${file}: keys[${i}]`;
    if (jwk === null || typeof jwk !== 'object' || !PRIVATE_MEMBERS[jwk.kty]) {
      throw new ConfigError(`${where} must be an RSA, EC or OKP JWK`);
    }
    if (jwk.use !== undefined && jwk.use !== 'sig') {
      throw new ConfigError(`${where} has use "${jwk.use}"; only signing keys (use "sig") are supported`);
    }
    const missing = PRIVATE_MEMBERS[jwk.kty].filter((m) => typeof jwk[m] !== 'string');
    if (missing.length) {
      throw new ConfigError(`${where} is not a private key (missing ${missing.join(', ')}); the provider needs private keys to sign`);
    }
    try {
      // Catches malformed key material now rather than at first signature.
      createPrivateKey({ key: jwk, format: 'jwk' });
    } catch (err) {
      throw new ConfigError(`${where} is not a usable private key: ${err.message}`);
    }
    if (jwk.kty === 'OKP' && jwk.crv !== 'Ed25519') {
      throw new ConfigError(`${where} uses curve ${jwk.crv}; only Ed25519 OKP keys are supported`);
    }
    return { ...jwk, kid: jwk.kid ?? jwkThumbprint(jwk), use: jwk.use ?? 'sig' };
  });

  const kids = new Set();
  for (const k of keys) {
    if (kids.has(k.kid)) throw new ConfigError(`--keys file ${file} has duplicate kid "${k.kid}"`);
    kids.add(k.kid);
  }

  const activeIndex = keys.findIndex((k) => keySupportsAlg(k, signingAlg));
  if (activeIndex === -1) {
    throw new ConfigError(`--keys file ${file} has no key that can sign with signing_alg ${signingAlg}`);
  }
  const [active] = keys.splice(activeIndex, 1);
  // Pin the active key's alg so oidc-provider signs with the configured one
  // (an RSA key without `alg` would otherwise be usable for RS256 and PS256).
  return [{ ...active, alg: signingAlg }, ...keys];
}

// Public part of a private JWK, as published at jwks_uri.
export function publicJwk(jwk) {
  const {
    d, p, q, dp, dq, qi, oth, ...pub
  } = jwk;
  return pub;
}

// PEM encodings of a private JWK, for Rust tests whose JWT library loads PEM
// (jsonwebtoken's EncodingKey::from_rsa_pem / from_ec_pem / from_ed_pem).
// RSA as PKCS#1, which every RSA PEM loader accepts; EC and Ed25519 as PKCS#8,
// which is what those loaders expect.
export function pemFor(jwk) {
  const privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
  const type = jwk.kty === 'RSA' ? 'pkcs1' : 'pkcs8';
  return {
    kid: jwk.kid,
    alg: jwk.alg,
    kty: jwk.kty,
    private_pem: privateKey.export({ format: 'pem', type }),
    public_pem: createPublicKey(privateKey).export({ format: 'pem', type: 'spki' }),
  };
}
