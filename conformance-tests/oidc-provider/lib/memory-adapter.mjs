// In-memory storage adapter for oidc-provider, owned by the harness.
//
// Why not oidc-provider's built-in MemoryAdapter: since v9 it creates a fresh
// store per Provider instance, and the harness rebuilds the Provider whenever
// the signing keys change (see server.mjs). Sessions, grants, authorization
// codes and refresh tokens must survive such a rebuild, so the store lives here
// and is handed to every Provider instance through the adapter factory.
//
// Contract (oidc-provider adapter API): upsert, find, findByUid,
// findByUserCode, consume, destroy, revokeByGrantId. Everything is lost when
// the process exits, which is what a test harness wants.

// Models whose records carry a grantId and must disappear when the grant is
// revoked (revokeByGrantId).
const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

export class MemoryStore {
  // key -> { payload, expiresAt (ms epoch or Infinity) }
  #records = new Map();

  // secondary indexes: value -> primary key
  #sessionUids = new Map();

  #userCodes = new Map();

  // grantId -> Set of primary keys
  #grants = new Map();

  // Expired entries are removed lazily on read and by a periodic sweep, so a
  // long browser-test run does not grow without bound.
  #sweeper;

  constructor({ sweepIntervalMs = 60_000 } = {}) {
    this.#sweeper = setInterval(() => this.sweep(), sweepIntervalMs);
    // Never keep the process alive just for the sweep.
    this.#sweeper.unref();
  }

  get(key) {
    const record = this.#records.get(key);
    if (!record) return undefined;
    if (record.expiresAt <= Date.now()) {
      this.delete(key);
      return undefined;
    }
    return record.payload;
  }

  set(key, payload, expiresAt) {
    this.delete(key);
    this.#records.set(key, { payload, expiresAt });
    if (payload.uid && key.startsWith('Session:')) this.#sessionUids.set(payload.uid, key);
    if (payload.userCode) this.#userCodes.set(payload.userCode, key);
    if (payload.grantId && GRANTABLE.has(key.slice(0, key.indexOf(':')))) {
      let members = this.#grants.get(payload.grantId);
      if (!members) {
        members = new Set();
        this.#grants.set(payload.grantId, members);
      }
      members.add(key);
    }
  }

  delete(key) {
    const record = this.#records.get(key);
    if (!record) return;
    this.#records.delete(key);
    const { payload } = record;
    if (payload.uid && this.#sessionUids.get(payload.uid) === key) this.#sessionUids.delete(payload.uid);
    if (payload.userCode && this.#userCodes.get(payload.userCode) === key) this.#userCodes.delete(payload.userCode);
    if (payload.grantId) {
      const members = this.#grants.get(payload.grantId);
      if (members) {
        members.delete(key);
        if (members.size === 0) this.#grants.delete(payload.grantId);
      }
    }
  }

  keyBySessionUid(uid) {
    return this.#sessionUids.get(uid);
  }

  keyByUserCode(userCode) {
    return this.#userCodes.get(userCode);
  }

  revokeGrant(grantId) {
    const members = this.#grants.get(grantId);
    if (!members) return;
    for (const key of [...members]) this.delete(key);
    this.#grants.delete(grantId);
  }

  sweep() {
    const now = Date.now();
    for (const [key, record] of this.#records) {
      if (record.expiresAt <= now) this.delete(key);
    }
  }

  close() {
    clearInterval(this.#sweeper);
  }
}

class MemoryAdapter {
  constructor(model, store, clockToleranceSeconds) {
    this.model = model;
    this.store = store;
    this.clockToleranceSeconds = clockToleranceSeconds;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    // Keep records a little past their nominal expiry (clock tolerance) so
    // oidc-provider, not the store, decides whether something has expired.
    const expiresAt = typeof expiresIn === 'number'
      ? Date.now() + (expiresIn + this.clockToleranceSeconds) * 1000
      : Infinity;
    this.store.set(this.key(id), payload, expiresAt);
  }

  async find(id) {
    return this.store.get(this.key(id));
  }

  async findByUid(uid) {
    const key = this.store.keyBySessionUid(uid);
    return key ? this.store.get(key) : undefined;
  }

  async findByUserCode(userCode) {
    const key = this.store.keyByUserCode(userCode);
    return key ? this.store.get(key) : undefined;
  }

  async consume(id) {
    const payload = this.store.get(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    this.store.revokeGrant(grantId);
  }
}

// Returns the factory oidc-provider expects in its `adapter` option. Every
// Provider built with a factory from the same store shares all state.
export function adapterFactory(store, clockToleranceSeconds) {
  return (model) => new MemoryAdapter(model, store, clockToleranceSeconds);
}
