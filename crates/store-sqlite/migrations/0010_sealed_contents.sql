-- Content sealed under data keys that erasure destroys (crypto-shredding,
-- docs/PRIVACY.md). `sealed` is AES-256-GCM ciphertext of the salt and the content
-- fields (crates/core/src/seal.rs) under the data key `key_id`, kept wrapped in the key
-- file beside this database (aitrail-keys.db). The keyed hashes stay beside it, in clear:
-- lookups by text index them.
--
-- The rows of the old table are sealed by the binary right after this migration (it
-- needs the content key, which SQL does not have), then `contents_plain` is dropped and
-- the file rewritten (VACUUM), so no plaintext remains in it.
DROP INDEX contents_prompt_hash;
DROP INDEX contents_response_hash;
ALTER TABLE contents RENAME TO contents_plain;
CREATE TABLE contents (
    pos           INTEGER PRIMARY KEY, -- the record's pos
    key_id        BLOB NOT NULL CHECK (length(key_id) = 16),
    sealed        BLOB NOT NULL,
    prompt_hash   BLOB CHECK (length(prompt_hash) = 32),
    response_hash BLOB CHECK (length(response_hash) = 32)
) STRICT;
CREATE INDEX contents_prompt_hash ON contents (prompt_hash) WHERE prompt_hash IS NOT NULL;
CREATE INDEX contents_response_hash ON contents (response_hash) WHERE response_hash IS NOT NULL;

-- Bumped when an erasure retires data keys of the tenant, after they are marked retired:
-- a writer reads it as it claims seqs and drops the keys it cached for the tenant
-- (crates/store/src/sealing.rs).
ALTER TABLE logs ADD COLUMN key_epoch INTEGER NOT NULL DEFAULT 0;
