-- Roles and their policies (SPEC §8, docs/ARCHITECTURE.md "Roles and
-- policies").  A role is a named policy document; a user holds any number
-- of roles and may do what the union of their statements allows (an
-- explicit deny wins, no match is a deny).  The three built-in roles cannot
-- be changed or deleted.  Every user that existed before roles did could do
-- everything, so each keeps that as the admin role.

CREATE TABLE roles (
    id           uuid PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    description  text NOT NULL DEFAULT '',
    policy       jsonb NOT NULL,
    builtin      boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_roles (
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    role_id     uuid NOT NULL REFERENCES roles ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role_id ON user_roles (role_id);

INSERT INTO roles (id, name, description, policy, builtin) VALUES
    ('00000000-0000-4000-8000-000000000001', 'admin', 'Everything.',
     '{"statements": [{"effect": "allow", "actions": ["*"], "resources": ["*"]}]}', true),
    ('00000000-0000-4000-8000-000000000002', 'read-only',
     'Reads and lists of whatever the user can reach.',
     '{"statements": [{"effect": "allow", "actions": ["*:get", "*:list"], "resources": ["*"]}]}',
     true),
    ('00000000-0000-4000-8000-000000000003', 'power-user',
     'Everything but changes to users and roles, in the workspaces the user is a member of.',
     '{"statements": [{"effect": "allow", "actions": ["*"], "resources": ["*"]},'
     ' {"effect": "deny", "actions": ["user:create", "user:update", "user:delete",'
     '  "role:create", "role:update", "role:delete", "role:assign", "role:unassign",'
     '  "workspace:access-all"], "resources": ["*"]}]}',
     true);

INSERT INTO user_roles (user_id, role_id)
SELECT id, '00000000-0000-4000-8000-000000000001' FROM users;

CREATE VIEW role_docs AS
SELECT r.id, r.name, r.created_at,
       jsonb_build_object('id', r.id, 'name', r.name, 'description', r.description,
                          'policy', r.policy, 'builtin', r.builtin,
                          'userCount', (SELECT count(*) FROM user_roles ur
                                         WHERE ur.role_id = r.id),
                          'createdAt', vmx_rfc3339(r.created_at),
                          'updatedAt', vmx_rfc3339(r.updated_at)) AS doc
  FROM roles r;

CREATE OR REPLACE VIEW user_docs AS
SELECT u.id, u.username,
       jsonb_build_object('id', u.id, 'username', u.username, 'name', u.name,
                          'email', u.email, 'enabled', u.enabled, 'state', u.state,
                          'roles', coalesce((SELECT jsonb_agg(r.name ORDER BY r.name)
                                               FROM user_roles ur JOIN roles r
                                                 ON r.id = ur.role_id
                                              WHERE ur.user_id = u.id), '[]'::jsonb),
                          'createdAt', vmx_rfc3339(u.created_at),
                          'updatedAt', vmx_rfc3339(u.updated_at)) AS doc,
       u.created_at
  FROM users u;
