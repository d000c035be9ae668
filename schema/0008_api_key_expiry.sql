-- API keys that expire (docs/ARCHITECTURE.md, "API keys"): expires_at,
-- NULL for never, reaches the snapshot; the data plane refuses the key from
-- then on, checking its clock on every request.

ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;

-- Only the columns that reach the snapshot bump the version.
DROP TRIGGER api_keys_config_version ON api_keys;
CREATE TRIGGER api_keys_config_version
    AFTER INSERT OR DELETE
       OR UPDATE OF id, workspace_id, environment_id, name, description, enabled, key_hash,
                    resources, labels, enforce_capacity, capacity, expires_at
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
                          'createdAt', vmx_rfc3339(k.created_at),
                          'updatedAt', vmx_rfc3339(k.updated_at)) AS doc
  FROM api_keys k;
