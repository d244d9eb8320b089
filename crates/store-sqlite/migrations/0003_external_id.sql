-- The caller's own id of a call, unique within its tenant (NULLs are distinct), so a retry
-- or a re-import never logs a call twice. The index also serves the external_id filter.
ALTER TABLE records ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX records_external_id ON records (tenant_id, external_id);
