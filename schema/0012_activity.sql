-- Who changed what (docs/ARCHITECTURE.md, "Activity"): one row per
-- management change, written in the change's own transaction, and per
-- login, failed login and logout.  The user's id and name are copied (the
-- user may be deleted later), and so are the workspace and environment ids:
-- the history outlives the objects.  changes never holds a secret (diff.c).

CREATE TABLE activity (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    user_id         uuid,
    username        text NOT NULL DEFAULT '',
    from_address    text NOT NULL DEFAULT '',
    action          text NOT NULL,
    method          text NOT NULL,
    path            text NOT NULL,
    workspace_id    uuid,
    environment_id  uuid,
    object_kind     text NOT NULL DEFAULT '',
    object_id       text NOT NULL DEFAULT '',
    object_name     text NOT NULL DEFAULT '',
    outcome         text NOT NULL CHECK (outcome IN ('success', 'failure')),
    status          integer NOT NULL,
    changes         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX activity_at ON activity (at, id);
CREATE INDEX activity_workspace_at ON activity (workspace_id, at);

CREATE VIEW activity_docs AS
SELECT a.id, a.at, a.user_id, a.action, a.workspace_id, a.object_id, a.outcome,
       jsonb_build_object('id', a.id, 'at', vmx_rfc3339(a.at), 'userId', a.user_id,
                          'username', a.username, 'fromAddress', a.from_address,
                          'action', a.action, 'method', a.method, 'path', a.path,
                          'workspaceId', a.workspace_id, 'environmentId', a.environment_id,
                          'object', jsonb_build_object('kind', a.object_kind,
                                                       'id', a.object_id,
                                                       'name', a.object_name),
                          'outcome', a.outcome, 'status', a.status,
                          'changes', a.changes) AS doc
  FROM activity a;
