// End-user interactions (login and consent) for the authorization code flow.
//
// oidc-provider leaves interactions to the application. Its built-in
// devInteractions accept any login/password, which would let a browser test
// "log in" as anybody; these handlers instead check the configured users'
// passwords, then grant consent automatically (every configured client is a
// first-party Liaison component, and a consent click would only slow tests).
//
// Routes (the `_interaction` cookie set by oidc-provider is path-scoped to
// /interaction/<uid>, which covers all three):
//   GET  /interaction/<uid>         login form, or auto-consent
//   POST /interaction/<uid>/login   form fields: login (= user sub), password
//   GET  /interaction/<uid>/abort   ends the flow with error=access_denied

import { createHash, timingSafeEqual } from 'node:crypto';

import { htmlEscape } from './html.mjs';

const MAX_FORM_BYTES = 16 * 1024;

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Constant-time comparison of secrets of possibly different length.
function secretEquals(a, b) {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}

async function readForm(req) {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new HttpError(415, 'the login form must be posted as application/x-www-form-urlencoded');
  }
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new HttpError(413, 'form body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sendHtml(res, status, title, body) {
  const html = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${htmlEscape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;max-width:26rem;margin:3rem auto}label,input,button{display:block;width:100%;margin:.3rem 0}input{padding:.4rem}.error{color:#b00020}.banner{background:#fff3cd;padding:.5rem;font-size:.85rem}</style>
</head>
<body>
<p class="banner">TEST-ONLY identity provider (Liaison conformance harness). Never use in production.</p>
${body}
</body>
</html>`;
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Length': Buffer.byteLength(html),
  });
  res.end(html);
}

function loginPage({
  uid, agency, clientName, loginHint, error,
}) {
  const uidPath = encodeURIComponent(uid);
  return `<h1 id="title">Sign in to ${htmlEscape(agency)}</h1>
<p>Client: <span id="client">${htmlEscape(clientName)}</span></p>
${error ? `<p class="error" id="login-error" role="alert">${htmlEscape(error)}</p>` : ''}
<form id="login-form" method="post" action="/interaction/${uidPath}/login" autocomplete="off">
  <label for="login">User (sub)</label>
  <input id="login" name="login" type="text" required autofocus value="${htmlEscape(loginHint ?? '')}">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" required>
  <button id="login-submit" type="submit">Sign in</button>
</form>
<p><a id="abort" href="/interaction/${uidPath}/abort">Cancel</a></p>`;
}

/**
 * Returns a request handler (req, res, url) for /interaction/* paths.
 * `getProvider` returns the current Provider (it changes on key rotation).
 */
export function interactionHandler({ getProvider, config, log }) {
  const usersBySub = new Map(config.users.map((u) => [u.sub, u]));
  const clientsById = new Map(config.clients.map((c) => [c.client_id, c]));

  async function loadInteraction(provider, req, res, uid) {
    const details = await provider.interactionDetails(req, res);
    // The cookie names the interaction; the URL must refer to the same one
    // (a stale tab must not complete a newer flow).
    if (details.uid !== uid) throw new HttpError(400, 'interaction in URL does not match the interaction cookie');
    return details;
  }

  function renderLogin(res, status, details, error) {
    const client = clientsById.get(details.params.client_id);
    sendHtml(res, status, 'Sign in', loginPage({
      uid: details.uid,
      agency: config.agency,
      clientName: client?.client_name ?? details.params.client_id,
      loginHint: details.params.login_hint,
      error,
    }));
  }

  async function autoConsent(provider, req, res, details) {
    const {
      prompt: { details: missing }, params, session, grantId,
    } = details;
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (!grant) throw new HttpError(400, 'grant for this interaction no longer exists');
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    if (missing.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const savedGrantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId: savedGrantId } }, {
      mergeWithLastSubmission: true,
    });
  }

  async function route(req, res, url) {
    const provider = getProvider();
    const match = /^\/interaction\/([^/]+)(\/login|\/abort)?$/.exec(url.pathname);
    if (!match) throw new HttpError(404, 'not found');
    const uid = decodeURIComponent(match[1]);
    const action = match[2];

    if (!action) {
      if (req.method !== 'GET') throw new HttpError(405, 'use GET');
      const details = await loadInteraction(provider, req, res, uid);
      switch (details.prompt.name) {
        case 'login': return renderLogin(res, 200, details);
        case 'consent': return autoConsent(provider, req, res, details);
        default: throw new HttpError(501, `unsupported prompt ${details.prompt.name}`);
      }
    }

    if (action === '/abort') {
      if (req.method !== 'GET') throw new HttpError(405, 'use GET');
      await loadInteraction(provider, req, res, uid);
      return provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'End-User aborted interaction',
      }, { mergeWithLastSubmission: false });
    }

    // action === '/login'
    if (req.method !== 'POST') throw new HttpError(405, 'use POST');
    const details = await loadInteraction(provider, req, res, uid);
    if (details.prompt.name !== 'login') throw new HttpError(400, `interaction expects ${details.prompt.name}, not login`);
    const form = await readForm(req);
    const sub = form.get('login') ?? '';
    const password = form.get('password') ?? '';
    const user = usersBySub.get(sub);
    // Compare even for unknown users so timing does not reveal which subs exist.
    const ok = secretEquals(password, user?.password ?? '\0no-such-user') && user !== undefined;
    if (!ok) {
      log(`login failed for sub ${JSON.stringify(sub)}`);
      return renderLogin(res, 401, details, 'Invalid user or password.');
    }
    return provider.interactionFinished(req, res, {
      login: { accountId: user.sub, amr: ['pwd'] },
    }, { mergeWithLastSubmission: false });
  }

  return async function handle(req, res, url) {
    try {
      await route(req, res, url);
    } catch (err) {
      if (res.headersSent) {
        log(`interaction error after response started: ${err.stack ?? err}`);
        res.destroy();
        return;
      }
      // SessionNotFound: missing/expired interaction cookie or record.
      const status = err.status ?? (err.name === 'SessionNotFound' ? 400 : 500);
      if (status >= 500) log(`interaction error: ${err.stack ?? err}`);
      const message = err.error_description ?? err.message;
      sendHtml(res, status, 'Sign-in error', `<h1>Sign-in error</h1><p class="error" id="error">${htmlEscape(message)}</p>`);
    }
  };
}
