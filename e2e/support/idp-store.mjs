// Storage for the test authorization server (oidc-provider's adapter interface), one per
// server. oidc-provider's own fallback is a module-wide store shared by every server of the
// process, which it rightly warns about; a test server's tokens live exactly as long as it does.

/** The adapter class for one server: `new Provider(issuer, { adapter: storeFor(), ... })`. */
export function storeFor() {
  const rows = new Map(); // `${model}:${id}` -> { payload, expiresAt }
  const live = (key) => {
    const row = rows.get(key);
    if (row && row.expiresAt !== undefined && row.expiresAt <= Date.now()) {
      rows.delete(key);
      return undefined;
    }
    return row;
  };
  return class TestStore {
    constructor(model) { this.model = model; }
    key(id) { return `${this.model}:${id}`; }
    async upsert(id, payload, expiresIn) {
      rows.set(this.key(id), {
        payload: { ...payload },
        expiresAt: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined,
      });
    }
    async find(id) { return live(this.key(id))?.payload; }
    async findByUid(uid) { return this.findBy((p) => p.uid === uid); }
    async findByUserCode(userCode) { return this.findBy((p) => p.userCode === userCode); }
    async findBy(match) {
      for (const key of rows.keys()) {
        if (!key.startsWith(`${this.model}:`)) continue;
        const row = live(key);
        if (row && match(row.payload)) return row.payload;
      }
      return undefined;
    }
    async consume(id) {
      const row = live(this.key(id));
      if (row) row.payload.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id) { rows.delete(this.key(id)); }
    async revokeByGrantId(grantId) {
      for (const [key, row] of rows) if (row.payload.grantId === grantId) rows.delete(key);
    }
  };
}
