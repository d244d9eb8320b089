-- The PostgreSQL schema: the same log as the SQLite one (crates/store-sqlite/migrations),
-- with PostgreSQL's own types: uuid, timestamptz, boolean, jsonb, bytea.

-- The entry's JSON (docs/FORMAT.md: a fixed 17-byte prefix, then UTF-8 JSON). The database
-- encoding is UTF8 and never changes, so this is immutable in fact, which expression
-- indexes need.
CREATE FUNCTION aitrail_entry_json(entry bytea) RETURNS jsonb
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN convert_from(substr(entry, 18), 'UTF8')::jsonb;

-- One row per tenant log: its size is the next seq. The append transaction bumps it with
-- an upsert, which row-locks it until commit: writers of one tenant, on any node, take
-- turns, so seq stays contiguous and the tree has one history.
CREATE TABLE logs (
    tenant_id text PRIMARY KEY,
    size      bigint NOT NULL CHECK (size >= 0)
);

-- One row per record. `entry` is the record's log entry: the bytes its Merkle leaf hashes.
-- The other columns are copies of what the auditor queries filter and sort on; `aitrail
-- verify` checks them against the entry. model_config and attributes, as JSONB, are read
-- from the entry by the view records_json below.
CREATE TABLE records (
    pos             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- page cursor
    id              uuid NOT NULL UNIQUE,                           -- UUIDv7
    tenant_id       text NOT NULL,
    seq             bigint NOT NULL CHECK (seq >= 0),
    recorded_at     timestamptz NOT NULL,
    event_time      timestamptz NOT NULL, -- microseconds; the entry keeps the client's text
    model_provider  text,
    model_name      text,
    model_version   text,
    deployment_id   text,
    safety_mode     text,
    operation_type  text,
    user_id         text,
    agent_id        text,
    session_id      text,
    feature_code    text,
    external_id     text,                 -- the caller's own id; unique in its tenant
    temperature     double precision,     -- numeric copy of the literal in the entry
    success         boolean NOT NULL,
    entry           bytea NOT NULL,
    UNIQUE (tenant_id, seq),
    -- NULLs are distinct: only records that carry an external_id are held to it.
    CONSTRAINT records_external_id UNIQUE (tenant_id, external_id)
);

-- Each filter column with pos: "filter, newest first" walks one index backwards and
-- stops after a page (the SQLite indexes get pos for free as the rowid).
CREATE INDEX records_tenant         ON records (tenant_id, pos);
CREATE INDEX records_event_time     ON records (event_time, pos);
CREATE INDEX records_model_provider ON records (model_provider, pos);
CREATE INDEX records_model_name     ON records (model_name, pos);
CREATE INDEX records_model_version  ON records (model_version, pos);
CREATE INDEX records_deployment_id  ON records (deployment_id, pos);
CREATE INDEX records_safety_mode    ON records (safety_mode, pos);
CREATE INDEX records_operation_type ON records (operation_type, pos);
CREATE INDEX records_user_id        ON records (user_id, pos);
CREATE INDEX records_agent_id       ON records (agent_id, pos);
CREATE INDEX records_session_id     ON records (session_id, pos);
CREATE INDEX records_feature_code   ON records (feature_code, pos);
CREATE INDEX records_temperature    ON records (temperature, pos);

-- The records with model_config and attributes as JSONB, for ad-hoc SQL
-- (`WHERE model_config->>'top_p' = '0.9'`). Read from the entry, so they can never disagree
-- with the log, and cost nothing at ingest (stored generated columns parse every entry
-- twice: 20-45% of batch ingest throughput, BENCHMARKS.md). Index a key you query often
-- with an expression index on aitrail_entry_json(entry).
CREATE VIEW records_json AS
    SELECT r.*,
           aitrail_entry_json(r.entry) -> 'record' -> 'model_config' AS model_config,
           aitrail_entry_json(r.entry) -> 'record' -> 'attributes' AS attributes
    FROM records r;

-- Content kept apart from the entry, which holds only salted commitments to it: deleting
-- a row here (retention, erasure) leaves every leaf and proof intact.
CREATE TABLE contents (
    id               uuid PRIMARY KEY REFERENCES records (id),
    salt             bytea NOT NULL CHECK (length(salt) = 32),
    prompt           text,
    response         text,
    prompt_variables text                 -- canonical JSON, the bytes committed to
);

-- The log's hash tiles (crates/core/src/tiles.rs): `hashes` is 1 to 256 hashes of 32 bytes.
CREATE TABLE tiles (
    tenant_id text NOT NULL,
    level     smallint NOT NULL,
    idx       bigint NOT NULL,
    hashes    bytea NOT NULL,
    PRIMARY KEY (tenant_id, level, idx)
);

-- Every signed checkpoint, kept forever. The primary key is what stops two nodes from
-- keeping two roots for one size.
CREATE TABLE checkpoints (
    tenant_id text NOT NULL,
    size      bigint NOT NULL CHECK (size > 0),
    root      bytea NOT NULL CHECK (length(root) = 32),
    note      text NOT NULL,
    signed_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, size)
);

-- The verifier key every checkpoint of this database is signed with: a node that starts
-- with another key is refused before it signs anything.
CREATE TABLE log_key (
    only_one boolean PRIMARY KEY DEFAULT true CHECK (only_one),
    verifier text NOT NULL
);
