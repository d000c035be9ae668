-- API keys that expire, rotate, and tell their last use (docs/ARCHITECTURE.md, "API keys").
--
-- expires_at: NULL for never; reaches the snapshot, and the data plane
--   refuses the key from then on, checking its clock on every request.
-- previous_key_hash, previous_expires_at: the key a rotation replaced, which
--   keeps working until then (both NULL: none); a rotation replaces them.
-- last_used_at: the newest audit record of the key, written by the control
--   plane's ingestion once per batch of records; observed state, not config:
--   it is not in the snapshot and does not bump the version.

ALTER TABLE api_keys
    ADD COLUMN expires_at           timestamptz,
    ADD COLUMN previous_key_hash    text UNIQUE,
    ADD COLUMN previous_expires_at  timestamptz,
    ADD COLUMN last_used_at         timestamptz,
    ADD CONSTRAINT api_keys_previous_key
        CHECK ((previous_key_hash IS NULL) = (previous_expires_at IS NULL));

-- Only the columns that reach the snapshot bump the version.
DROP TRIGGER api_keys_config_version ON api_keys;
CREATE TRIGGER api_keys_config_version
    AFTER INSERT OR DELETE
       OR UPDATE OF id, workspace_id, environment_id, name, description, enabled, key_hash,
                    resources, labels, enforce_capacity, capacity, expires_at,
                    previous_key_hash, previous_expires_at
    ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION vmx_bump_config_version();

CREATE OR REPLACE VIEW api_key_docs AS
SELECT k.id, k.workspace_id, k.environment_id, k.created_at,
       jsonb_build_object('id', k.id, 'workspaceId', k.workspace_id,
                          'environmentId', k.environment_id, 'name', k.name,
                          'description', k.description, 'enabled', k.enabled,
                          'maskedKey', k.masked_key, 'resources', k.resources,
                          'labels', k.labels, 'enforceCapacity', k.enforce_capacity,
                          'capacity', k.capacity,
                          'expiresAt', vmx_rfc3339(k.expires_at),
                          'previousKeyExpiresAt', vmx_rfc3339(k.previous_expires_at),
                          'lastUsedAt', vmx_rfc3339(k.last_used_at),
                          'createdAt', vmx_rfc3339(k.created_at),
                          'updatedAt', vmx_rfc3339(k.updated_at)) AS doc
  FROM api_keys k;
