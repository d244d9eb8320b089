-- API keys (crates/core/src/access.rs): never the secret, only its HMAC under the
-- server's secret. A key without tenant_id is a global admin's.
CREATE TABLE api_keys (
    id         text PRIMARY KEY,                 -- 16 hex digits, public
    role       text NOT NULL CHECK (role IN ('ingest', 'viewer', 'auditor', 'admin')),
    tenant_id  text,
    digest     bytea NOT NULL CHECK (length(digest) = 32),
    label      text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz
);
