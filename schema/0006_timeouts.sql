-- Provider timeouts (docs/ARCHITECTURE.md, "Snapshot"): a connection's and a
-- resource's own {"connectMs", "firstByteMs", "idleMs", "totalMs"}, each in
-- milliseconds; NULL, JSON null or an absent member inherits (a resource's
-- override its connection's, which override the data plane's directives).

ALTER TABLE connections ADD COLUMN timeouts jsonb;
ALTER TABLE resources ADD COLUMN timeouts jsonb;

-- timeouts reaches the snapshot: an update of it bumps the config version
-- (the resources trigger fires on any update)
DROP TRIGGER connections_config_version ON connections;
CREATE TRIGGER connections_config_version
    AFTER INSERT OR DELETE
       OR UPDATE OF id, workspace_id, environment_id, name, description, provider, config,
                    secrets, allowed_models, capacity, timeouts
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
                          'timeouts', c.timeouts,
                          'discoveredCapacity', c.discovered_capacity,
                          'credentialsStatus', CASE WHEN c.provider = 'aws-bedrock'
                              THEN coalesce(c.credentials_status, '{"state": "pending"}')
                              END,
                          'createdAt', vmx_rfc3339(c.created_at),
                          'updatedAt', vmx_rfc3339(c.updated_at)) AS doc
  FROM connections c;

CREATE OR REPLACE VIEW resource_docs AS
SELECT r.id, r.workspace_id, r.environment_id, r.created_at,
       jsonb_build_object('id', r.id, 'workspaceId', r.workspace_id,
                          'environmentId', r.environment_id, 'name', r.name,
                          'description', r.description, 'model', r.model,
                          'routing', r.routing, 'fallbackModels', r.fallback_models,
                          'useFallback', r.use_fallback,
                          'secondaryModels', r.secondary_models,
                          'enforceCapacity', r.enforce_capacity, 'capacity', r.capacity,
                          'timeouts', r.timeouts,
                          'createdAt', vmx_rfc3339(r.created_at),
                          'updatedAt', vmx_rfc3339(r.updated_at)) AS doc
  FROM resources r;
