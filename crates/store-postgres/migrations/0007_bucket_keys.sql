-- Data keys wrapped under bucket keys (crates/core/src/seal.rs, docs/PRIVACY.md): each
-- (tenant, user) falls in one of 4096 buckets, and each bucket has one current key, stored
-- wrapped under the content key. Destroying data keys rekeys their buckets (the others
-- rewrapped under a new bucket key, the old one deleted) and rewrites this small table
-- (VACUUM FULL), instead of the whole of `data_keys`: whatever copy of a destroyed data
-- key remains in dead tuples of `data_keys` can no longer be unwrapped.
--
-- Keys stored before (wrapped under the content key, `bucket_key` NULL) are rewrapped by
-- the binary right after this migration (it needs the content key), then `data_keys` is
-- rewritten once.
CREATE TABLE bucket_keys (
    id      uuid PRIMARY KEY,
    bucket  integer NOT NULL CHECK (bucket BETWEEN 0 AND 4095),
    wrapped bytea NOT NULL,
    current boolean NOT NULL DEFAULT true
);
CREATE UNIQUE INDEX bucket_keys_current ON bucket_keys (bucket) WHERE current;

-- The reference also locks: adding a data key under a bucket key holds it (FOR KEY
-- SHARE) until the add commits, so a rekey, which deletes the old key, waits for it.
ALTER TABLE data_keys ADD COLUMN bucket_key uuid REFERENCES bucket_keys (id);
CREATE INDEX data_keys_bucket ON data_keys (bucket_key);

-- A rewrite (VACUUM FULL) still owed: named here in the transaction that makes it needed,
-- removed once one ran with no older transaction that could keep the deleted rows; every
-- start and every erasure runs those owed.
CREATE TABLE pending_rewrites (
    relation text PRIMARY KEY CHECK (relation IN ('data_keys', 'bucket_keys'))
);
