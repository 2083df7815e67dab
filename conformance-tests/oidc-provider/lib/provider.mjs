// Builds an oidc-provider Provider instance from the validated harness config
// and the current signing key set.
//
// oidc-provider takes its keys (`jwks`) only at construction and exposes no API
// to change them afterwards, so key rotation builds a fresh Provider with the
// same issuer, the same shared storage adapter and the same cookie keys, and
// server.mjs swaps it in behind a stable HTTP server. Everything stateful
// (sessions, grants, codes, refresh tokens, interactions) lives in the shared
// MemoryStore, so a rebuild is invisible to clients apart from the key change.

import { adapterFactory } from './memory-adapter.mjs';
import { htmlEscape } from './html.mjs';

// Claims of the standard OIDC `profile` and `email` scopes (OIDC Core 5.4).
const PROFILE_CLAIMS = [
  'name', 'family_name', 'given_name', 'middle_name', 'nickname', 'preferred_username',
  'profile', 'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at',
];
const EMAIL_CLAIMS = ['email', 'email_verified'];
// Liaison-specific claims always offered by the `liaison` scope.
const LIAISON_CLAIMS = ['agency', 'roles', 'team', 'vetting'];

// Seconds. Fixed values (rather than oidc-provider's defaults) both document
// the harness's behaviour and silence oidc-provider's "you SHOULD change"
// notices for the ttl helpers.
const AUTHORIZATION_CODE_TTL = 60;
const INTERACTION_TTL = 10 * 60;
const SESSION_TTL = 8 * 60 * 60;
const GRANT_TTL = 24 * 60 * 60;
const REFRESH_TOKEN_TTL = 24 * 60 * 60;
const CLOCK_TOLERANCE = 5;

function liaisonScopeClaims(users) {
  // Any custom user claim that is not part of a standard scope is released
  // through `liaison`, so every configured user claim can reach the ID token
  // and userinfo.
  const claims = new Set(LIAISON_CLAIMS);
  const standard = new Set([...PROFILE_CLAIMS, ...EMAIL_CLAIMS]);
  for (const user of users) {
    for (const name of Object.keys(user.claims)) {
      if (!standard.has(name)) claims.add(name);
    }
  }
  return [...claims];
}

function toClientMetadata(client, signingAlg) {
  const usesCode = client.grant_types.includes('authorization_code');
  const metadata = {
    client_id: client.client_id,
    grant_types: client.grant_types,
    response_types: usesCode ? ['code'] : [],
    redirect_uris: client.redirect_uris,
    token_endpoint_auth_method: client.token_endpoint_auth_method,
    id_token_signed_response_alg: signingAlg,
  };
  if (client.client_secret !== undefined) metadata.client_secret = client.client_secret;
  if (client.client_name !== undefined) metadata.client_name = client.client_name;
  if (client.post_logout_redirect_uris !== undefined) {
    metadata.post_logout_redirect_uris = client.post_logout_redirect_uris;
  }
  if (client.scope !== undefined) metadata.scope = client.scope;
  return metadata;
}

/**
 * @param {object} oidc  the imported oidc-provider module ({ Provider, errors })
 * @param {object} opts
 * @param {string} opts.issuer       http://host:port, no trailing slash
 * @param {object} opts.config       validated config (lib/config.mjs)
 * @param {object[]} opts.keys       private JWKs, active signing key first
 * @param {MemoryStore} opts.store   storage shared by every Provider instance
 * @param {string[]} opts.cookieKeys keys signing the provider's cookies; shared
 *                                   so cookies survive a rebuild
 * @param {(msg: string) => void} opts.log
 */
export function buildProvider(oidc, {
  issuer, config, keys, store, cookieKeys, log,
}) {
  const { Provider, errors } = oidc;
  const activeKid = keys[0].kid;
  const usersBySub = new Map(config.users.map((u) => [u.sub, u]));
  const clientsById = new Map(config.clients.map((c) => [c.client_id, c]));
  const resource = config.resourceIndicator;

  const userClaims = (user) => ({ agency: config.agency, ...user.claims });

  const provider = new Provider(issuer, {
    adapter: adapterFactory(store, CLOCK_TOLERANCE),
    clockTolerance: CLOCK_TOLERANCE,
    jwks: { keys: structuredClone(keys) },
    cookies: { keys: cookieKeys },

    clients: config.clients.map((c) => toClientMetadata(c, config.signingAlg)),
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: config.signingAlg,
    },
    // Code flow only: no implicit/hybrid tokens in the front channel.
    responseTypes: ['code'],
    // Only the methods the config schema can express.
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'none'],

    // Accounts are exactly the configured users; an unknown sub yields no
    // account, so nothing can be issued for it.
    async findAccount(ctx, sub) {
      const user = usersBySub.get(sub);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        // oidc-provider filters these by granted scopes/claims itself.
        async claims() {
          return { ...userClaims(user), sub: user.sub };
        },
      };
    },

    claims: {
      openid: ['sub'],
      profile: PROFILE_CLAIMS,
      email: EMAIL_CLAIMS,
      liaison: liaisonScopeClaims(config.users),
    },
    // Put scope-granted claims in the ID token too, not only at userinfo
    // (oidc-provider's default keeps them out of the ID token whenever an
    // access token is issued alongside it).
    conformIdTokenClaims: false,

    // PKCE (S256) is mandatory for every authorization code request, also for
    // confidential clients, as the DPO console will use it.
    pkce: { required: () => true },

    interactions: {
      // Served by lib/interactions.mjs in front of oidc-provider.
      url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    },

    features: {
      // The built-in dev interactions accept any login; the harness's own
      // login form checks the configured users' passwords instead.
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Requests without a `resource` parameter target the Liaison API, so
        // client_credentials yields a JWT for `audience` without extra params.
        // In the code flow with `openid`, oidc-provider still issues an opaque
        // userinfo token unless the token request names the resource.
        async defaultResource(ctx, client, oneOf) {
          if (oneOf) return oneOf.includes(resource) ? resource : oneOf;
          return resource;
        },
        async useGrantedResource() {
          return false;
        },
        async getResourceServerInfo(ctx, indicator) {
          if (indicator !== resource) {
            throw new errors.InvalidTarget(`this provider only issues access tokens for ${resource}`);
          }
          return {
            audience: config.audience,
            scope: config.apiScopes.join(' '),
            accessTokenFormat: 'jwt',
            accessTokenTTL: config.accessTokenTtl,
            // Pin the active kid: older keys stay in the keystore (they must
            // remain published) and must not be chosen for new tokens.
            jwt: { sign: { alg: config.signingAlg, kid: activeKid } },
          };
        },
      },
    },

    // Top-level claims merged into JWT access tokens. oidc-provider spreads
    // these first, so they can never override iss/sub/aud/exp/iat/jti/
    // client_id/scope (config validation rejects such names anyway).
    async extraTokenClaims(ctx, token) {
      if (token.accountId) {
        const user = usersBySub.get(token.accountId);
        return user ? userClaims(user) : { agency: config.agency };
      }
      const client = clientsById.get(token.clientId);
      return { agency: config.agency, ...client?.claims };
    },

    formats: {
      customizers: {
        // oidc-provider does not emit nbf on JWT access tokens; Liaison's
        // verifier checks it when present, so include it (= iat).
        async jwt(ctx, token, jwt) {
          jwt.payload.nbf = jwt.payload.iat;
        },
      },
    },

    // Refresh tokens for every code-flow client registered with the
    // refresh_token grant, without the offline_access/prompt=consent dance,
    // which would only complicate browser tests.
    async issueRefreshToken(ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },

    ttl: {
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? config.accessTokenTtl,
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? config.accessTokenTtl,
      IdToken: config.accessTokenTtl,
      AuthorizationCode: AUTHORIZATION_CODE_TTL,
      RefreshToken: REFRESH_TOKEN_TTL,
      Interaction: INTERACTION_TTL,
      Session: SESSION_TTL,
      Grant: GRANT_TTL,
      DeviceCode: INTERACTION_TTL,
      BackchannelAuthenticationRequest: INTERACTION_TTL,
      PreAuthorizedCode: INTERACTION_TTL,
    },

    // Browsers may call the token/userinfo endpoints from a client's own
    // origin (that of one of its redirect URIs).
    clientBasedCORS(ctx, origin, client) {
      return client.redirectUris.some((uri) => URL.parse(uri)?.origin === origin);
    },

    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Liaison test IdP error</title></head>
<body><h1>Liaison test IdP: error</h1>
${Object.entries(out).map(([k, v]) => `<p><strong>${htmlEscape(k)}</strong>: <span id="${htmlEscape(k)}">${htmlEscape(v)}</span></p>`).join('\n')}
</body></html>`;
    },
  });

  provider.on('server_error', (ctx, err) => {
    log(`server_error on ${ctx.method} ${ctx.path}: ${err.stack ?? err}`);
  });

  return provider;
}

// Static clients are only validated by oidc-provider on first use; force that
// now so a bad client definition fails start-up (exit 2) instead of a request.
export async function validateClients(provider, config) {
  for (const client of config.clients) {
    try {
      await provider.Client.find(client.client_id);
    } catch (err) {
      const detail = err.error_description ?? err.message;
      throw new Error(`client "${client.client_id}" rejected by oidc-provider: ${detail}`);
    }
  }
}
