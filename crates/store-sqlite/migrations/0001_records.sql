-- One row per tenant log: its size is the next seq. Bumping it inside the append
-- transaction is what keeps seq contiguous, even with several writing processes.
CREATE TABLE logs (
    tenant_id TEXT PRIMARY KEY,
    size      INTEGER NOT NULL CHECK (size >= 0)
) STRICT;

-- One row per record. `entry` is the record's log entry (docs/FORMAT.md): the bytes its
-- Merkle leaf hashes. The other columns are copies of what the auditor queries filter and
-- sort on; `aitrail verify` checks them against the entry.
CREATE TABLE records (
    pos             INTEGER PRIMARY KEY,  -- commit order across tenants; the page cursor
    id              TEXT NOT NULL UNIQUE, -- UUIDv7
    tenant_id       TEXT NOT NULL,
    seq             INTEGER NOT NULL CHECK (seq >= 0),
    recorded_at     TEXT NOT NULL,        -- RFC 3339, UTC
    event_time      INTEGER NOT NULL,     -- Unix nanoseconds, UTC
    model_provider  TEXT,
    model_name      TEXT,
    model_version   TEXT,
    deployment_id   TEXT,
    safety_mode     TEXT,
    operation_type  TEXT,
    user_id         TEXT,
    agent_id        TEXT,
    session_id      TEXT,
    feature_code    TEXT,
    temperature     REAL,                 -- numeric copy of the literal in the entry
    success         INTEGER NOT NULL CHECK (success IN (0, 1)),
    entry           BLOB NOT NULL,
    UNIQUE (tenant_id, seq)
) STRICT;

-- Single-column indexes: each also orders by pos (SQLite appends the rowid), so a filter
-- plus "newest first" walks one index backwards and stops after a page.
CREATE INDEX records_tenant         ON records (tenant_id);
CREATE INDEX records_event_time     ON records (event_time);
CREATE INDEX records_model_provider ON records (model_provider);
CREATE INDEX records_model_name     ON records (model_name);
CREATE INDEX records_model_version  ON records (model_version);
CREATE INDEX records_deployment_id  ON records (deployment_id);
CREATE INDEX records_safety_mode    ON records (safety_mode);
CREATE INDEX records_operation_type ON records (operation_type);
CREATE INDEX records_user_id        ON records (user_id);
CREATE INDEX records_agent_id       ON records (agent_id);
CREATE INDEX records_session_id     ON records (session_id);
CREATE INDEX records_feature_code   ON records (feature_code);
CREATE INDEX records_temperature    ON records (temperature);

-- Content kept apart from the entry, which holds only salted commitments to it: deleting
-- a row here (retention, erasure) leaves every leaf and proof intact.
CREATE TABLE contents (
    pos              INTEGER PRIMARY KEY, -- the record's pos
    salt             BLOB NOT NULL CHECK (length(salt) = 32),
    prompt           TEXT,
    response         TEXT,
    prompt_variables TEXT                 -- canonical JSON
) STRICT;

-- The log's hash tiles (crates/core/src/tiles.rs): `hashes` is 1 to 256 hashes of 32 bytes.
CREATE TABLE tiles (
    tenant_id TEXT NOT NULL,
    level     INTEGER NOT NULL,
    idx       INTEGER NOT NULL,
    hashes    BLOB NOT NULL,
    PRIMARY KEY (tenant_id, level, idx)
) STRICT, WITHOUT ROWID;

-- Every signed checkpoint, kept forever.
CREATE TABLE checkpoints (
    tenant_id TEXT NOT NULL,
    size      INTEGER NOT NULL CHECK (size > 0),
    root      BLOB NOT NULL CHECK (length(root) = 32),
    note      TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, size)
) STRICT;
