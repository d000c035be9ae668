-- Observed state of AI connections: what the control plane learns by
-- itself rather than by a management call.  Neither column is config:
-- writing them does not bump the config version.
--
-- discovered_capacity: the providers' limit headers that the data planes
--   report (GET /vmx/capacity), merged per model, newest first:
--   {"models": {"<model>": {"capacity": [{"period": "minute", "requests": N,
--    "tokens": N, "enabled": true}], "updatedAt": "<RFC 3339>"}}}
-- credentials_status: for aws-bedrock, the outcome of the last STS
--   AssumeRole (never a credential): {"state", "expiresAt", "refreshedAt",
--   "error", "nextAttemptAt"}; NULL before the first attempt.

ALTER TABLE connections
    ADD COLUMN discovered_capacity  jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN credentials_status   jsonb;

-- Only the columns that reach the snapshot bump the version; a column added
-- later that reaches it must be listed here too.
DROP TRIGGER connections_config_version ON connections;
CREATE TRIGGER connections_config_version
    AFTER INSERT OR DELETE
       OR UPDATE OF id, workspace_id, environment_id, name, description, provider, config,
                    secrets, allowed_models, capacity
    ON connections
    FOR EACH STATEMENT EXECUTE FUNCTION vmx_bump_config_version();

CREATE OR REPLACE VIEW connection_docs AS
SELECT c.id, c.workspace_id, c.environment_id, c.created_at,
       jsonb_build_object('id', c.id, 'workspaceId', c.workspace_id,
                          'environmentId', c.environment_id, 'name', c.name,
                          'description', c.description, 'provider', c.provider,
                          'config', c.config || coalesce(
                              (SELECT jsonb_object_agg(k, to_jsonb('********'::text))
                                 FROM jsonb_object_keys(c.secrets) k), '{}'),
                          'allowedModels', c.allowed_models, 'capacity', c.capacity,
                          'discoveredCapacity', c.discovered_capacity,
                          'credentialsStatus', CASE WHEN c.provider = 'aws-bedrock'
                              THEN coalesce(c.credentials_status, '{"state": "pending"}')
                              END,
                          'createdAt', vmx_rfc3339(c.created_at),
                          'updatedAt', vmx_rfc3339(c.updated_at)) AS doc
  FROM connections c;
