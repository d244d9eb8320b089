-- Each tenant's privacy policy (crates/core/src/policy.rs) as its JSON; a tenant without
-- a row has the default policy.
CREATE TABLE policies (
    tenant_id  text PRIMARY KEY,
    policy     text NOT NULL,
    updated_at timestamptz NOT NULL
);
