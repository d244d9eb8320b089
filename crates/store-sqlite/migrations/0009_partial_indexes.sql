-- The filter indexes of the optional columns hold only the rows that have a value. A
-- filter is always `column IN (…)` or a comparison, which no NULL matches, so SQLite
-- still uses them for it; and an append no longer inserts into the index of every column
-- it leaves empty (an OTLP span or a proxied call leaves about half of them empty).
-- external_id stays unique within its tenant: NULLs were distinct before and are absent now.
DROP INDEX records_model_provider;
DROP INDEX records_model_name;
DROP INDEX records_model_version;
DROP INDEX records_deployment_id;
DROP INDEX records_safety_mode;
DROP INDEX records_operation_type;
DROP INDEX records_user_id;
DROP INDEX records_agent_id;
DROP INDEX records_session_id;
DROP INDEX records_feature_code;
DROP INDEX records_temperature;
DROP INDEX records_external_id;
CREATE INDEX records_model_provider ON records (model_provider) WHERE model_provider IS NOT NULL;
CREATE INDEX records_model_name     ON records (model_name)     WHERE model_name IS NOT NULL;
CREATE INDEX records_model_version  ON records (model_version)  WHERE model_version IS NOT NULL;
CREATE INDEX records_deployment_id  ON records (deployment_id)  WHERE deployment_id IS NOT NULL;
CREATE INDEX records_safety_mode    ON records (safety_mode)    WHERE safety_mode IS NOT NULL;
CREATE INDEX records_operation_type ON records (operation_type) WHERE operation_type IS NOT NULL;
CREATE INDEX records_user_id        ON records (user_id)        WHERE user_id IS NOT NULL;
CREATE INDEX records_agent_id       ON records (agent_id)       WHERE agent_id IS NOT NULL;
CREATE INDEX records_session_id     ON records (session_id)     WHERE session_id IS NOT NULL;
CREATE INDEX records_feature_code   ON records (feature_code)   WHERE feature_code IS NOT NULL;
CREATE INDEX records_temperature    ON records (temperature)    WHERE temperature IS NOT NULL;
CREATE UNIQUE INDEX records_external_id ON records (tenant_id, external_id) WHERE external_id IS NOT NULL;
