-- Legal holds: while one is in place, retention and erasure delete nothing of the tenant
-- (session_id '') or of that session.
CREATE TABLE holds (
    tenant_id  TEXT NOT NULL,
    session_id TEXT NOT NULL DEFAULT '',
    placed_at  TEXT NOT NULL,
    reason     TEXT,
    PRIMARY KEY (tenant_id, session_id)
) STRICT;
