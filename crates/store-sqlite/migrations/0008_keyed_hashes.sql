-- Keyed hashes of prompt and response (docs/PRIVACY.md): kept, and deleted, with the
-- content; indexed for lookups of a known text.
ALTER TABLE contents ADD COLUMN prompt_hash BLOB CHECK (length(prompt_hash) = 32);
ALTER TABLE contents ADD COLUMN response_hash BLOB CHECK (length(response_hash) = 32);
CREATE INDEX contents_prompt_hash ON contents (prompt_hash) WHERE prompt_hash IS NOT NULL;
CREATE INDEX contents_response_hash ON contents (response_hash) WHERE response_hash IS NOT NULL;
