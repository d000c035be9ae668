-- The data planes the control plane knows (docs/ARCHITECTURE.md, "Data
-- plane discovery"), shared by its replicas: found in VMX_DATAPLANES, in
-- the addresses of VMX_DATAPLANES_DNS, or announced by the data plane
-- itself through any replica.  The leader refreshes seen_at of each plane
-- it finds again, forgets those not seen for VMX_DATAPLANE_FORGET_SECONDS,
-- and writes what its pusher knows into state, which every replica serves
-- at GET /api/v1/dataplanes.

CREATE TABLE dataplanes (
    url         text PRIMARY KEY CHECK (length(url) BETWEEN 8 AND 255),
    source      text NOT NULL CHECK (source IN ('static', 'dns', 'announced')),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    state       jsonb                  -- NULL until the leader's pusher has asked it
);

-- a committed change wakes the leader's pusher, whichever replica made it
CREATE FUNCTION vmx_notify_config_version() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_notify('vmx_config', ''); RETURN NULL; END $$;
CREATE TRIGGER config_version_notify AFTER UPDATE ON config_version
    FOR EACH STATEMENT EXECUTE FUNCTION vmx_notify_config_version();
