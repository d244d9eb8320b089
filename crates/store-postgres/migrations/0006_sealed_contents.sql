-- Content sealed under data keys that erasure destroys (crypto-shredding,
-- docs/PRIVACY.md): `sealed` is AES-256-GCM ciphertext of the salt and the content
-- fields (crates/core/src/seal.rs) under the data key `key_id`. The node seals before it
-- sends: content never reaches PostgreSQL (its tables, WAL, or backups) in clear. The
-- keyed hashes stay beside it, in clear: lookups by text index them.
--
-- The rows of the old table are sealed by the binary right after this migration (it
-- needs the content key, which SQL does not have); then `contents_plain` is dropped.
DROP INDEX contents_prompt_hash;
DROP INDEX contents_response_hash;
ALTER TABLE contents RENAME TO contents_plain;
CREATE TABLE contents (
    id            uuid PRIMARY KEY REFERENCES records (id),
    key_id        uuid NOT NULL,
    sealed        bytea NOT NULL,
    prompt_hash   bytea CHECK (length(prompt_hash) = 32),
    response_hash bytea CHECK (length(response_hash) = 32)
);
CREATE INDEX contents_prompt_hash ON contents (prompt_hash) WHERE prompt_hash IS NOT NULL;
CREATE INDEX contents_response_hash ON contents (response_hash) WHERE response_hash IS NOT NULL;

-- One live data key per (tenant, user, session), stored wrapped under the content key,
-- which is derived from the log key and is in no database. Erasure retires the keys of
-- what it erases, deletes their content, then deletes them and rewrites this table
-- (VACUUM FULL): it stays small, one row per live (user, session).
CREATE TABLE data_keys (
    id         uuid PRIMARY KEY,
    tenant_id  text NOT NULL,
    user_id    text NOT NULL,  -- '' when the records have none
    session_id text NOT NULL,  -- '' when the records have none
    wrapped    bytea NOT NULL,
    retired    boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX data_keys_live ON data_keys (tenant_id, user_id, session_id) WHERE NOT retired;

-- Bumped when an erasure retires data keys of the tenant: a writer reads it as it claims
-- seqs and drops the keys it cached for the tenant (crates/store/src/sealing.rs).
ALTER TABLE logs ADD COLUMN key_epoch bigint NOT NULL DEFAULT 0;
