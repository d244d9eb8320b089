-- The verifier key every checkpoint of this store is signed with: a process that opens
-- it with another key is refused before it signs anything.
CREATE TABLE log_key (
    only_one INTEGER PRIMARY KEY CHECK (only_one = 1),
    verifier TEXT NOT NULL
) STRICT;
