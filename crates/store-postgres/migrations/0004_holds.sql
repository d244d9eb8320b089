-- Legal holds: while one is in place, retention and erasure delete nothing of the tenant
-- (session_id '') or of that session.
CREATE TABLE holds (
    tenant_id  text NOT NULL,
    session_id text NOT NULL DEFAULT '',
    placed_at  timestamptz NOT NULL,
    reason     text,
    PRIMARY KEY (tenant_id, session_id)
);
