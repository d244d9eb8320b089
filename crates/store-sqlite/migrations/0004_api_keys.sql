-- API keys (crates/core/src/access.rs): never the secret, only its HMAC under the
-- server's secret. A key without tenant_id is a global admin's.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,                 -- 16 hex digits, public
    role       TEXT NOT NULL CHECK (role IN ('ingest', 'viewer', 'auditor', 'admin')),
    tenant_id  TEXT,
    digest     BLOB NOT NULL CHECK (length(digest) = 32),
    label      TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
) STRICT;
