-- Each tenant's privacy policy (crates/core/src/policy.rs) as its JSON; a tenant without
-- a row has the default policy.
CREATE TABLE policies (
    tenant_id  TEXT PRIMARY KEY,
    policy     TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
