-- Data keys are wrapped under bucket keys (crates/core/src/seal.rs), in the key files
-- beside the database (`keyring.rs`: the bucket keys in aitrail-bucket-keys.db). The
-- database itself does not change; the version moves so that an older aitrail, which
-- would take every bucket-wrapped key for corrupt, refuses the store instead.
CREATE TABLE IF NOT EXISTS bucket_keys_migrated (only_one INTEGER PRIMARY KEY CHECK (only_one = 1));
