-- Prioritization (SPEC §6): at most one pool definition per environment.
--
-- pools: the validated list in the client's order, [{"name", "rank",
--   "minReservation", "maxReservation", "resources": ["<resource id>"]}];
--   a resource is in at most one pool (checked by the API).
-- strategy: {"name": "adaptive", "windowSeconds", "cooldownSeconds",
--   "scaleUpPercent"}, defaults filled in by the API.

CREATE TABLE pool_definitions (
    environment_id  uuid PRIMARY KEY REFERENCES environments ON DELETE CASCADE,
    workspace_id    uuid NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    pools           jsonb NOT NULL,
    strategy        jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER pool_definitions_config_version
    AFTER INSERT OR UPDATE OR DELETE ON pool_definitions
    FOR EACH STATEMENT EXECUTE FUNCTION vmx_bump_config_version();

-- A deleted resource leaves the pool that listed it, as it leaves API keys.
CREATE FUNCTION vmx_unpool_deleted_resource() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        UPDATE pool_definitions d
           SET pools = (SELECT jsonb_agg(jsonb_set(e.pool, '{resources}',
                                                   (e.pool -> 'resources') - OLD.id::text)
                                         ORDER BY e.n)
                          FROM jsonb_array_elements(d.pools) WITH ORDINALITY AS e(pool, n)),
               updated_at = now()
         WHERE d.environment_id = OLD.environment_id
           AND d.pools @> jsonb_build_array(
                              jsonb_build_object('resources', jsonb_build_array(OLD.id::text)));
        RETURN NULL;
    END $$;
CREATE TRIGGER resources_unpool AFTER DELETE ON resources
    FOR EACH ROW EXECUTE FUNCTION vmx_unpool_deleted_resource();

CREATE VIEW pool_definition_docs AS
SELECT d.workspace_id, d.environment_id,
       jsonb_build_object('workspaceId', d.workspace_id, 'environmentId', d.environment_id,
                          'pools', d.pools, 'strategy', d.strategy,
                          'createdAt', vmx_rfc3339(d.created_at),
                          'updatedAt', vmx_rfc3339(d.updated_at)) AS doc
  FROM pool_definitions d;
