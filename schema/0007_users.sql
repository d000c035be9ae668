-- Users (docs/ARCHITECTURE.md, "Users and sessions"): a display name, an
-- email, whether the user may log in, and the state: CHANGE_PASSWORD while
-- the password is one somebody else chose (generated for the first admin,
-- or set by an administrator as temporary), ACTIVE otherwise.
-- A session gets an id (the token itself is never shown), when it was last
-- used and the address it was opened from.

ALTER TABLE users
    ADD COLUMN name     text NOT NULL DEFAULT '',
    ADD COLUMN email    text NOT NULL DEFAULT '',
    ADD COLUMN enabled  boolean NOT NULL DEFAULT true,
    ADD COLUMN state    text NOT NULL DEFAULT 'ACTIVE'
                        CHECK (state IN ('ACTIVE', 'CHANGE_PASSWORD'));

ALTER TABLE sessions
    ADD COLUMN id            uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    ADD COLUMN last_seen_at  timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN from_address  text NOT NULL DEFAULT '';
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE OR REPLACE VIEW user_docs AS
SELECT u.id, u.username,
       jsonb_build_object('id', u.id, 'username', u.username, 'name', u.name,
                          'email', u.email, 'enabled', u.enabled, 'state', u.state,
                          'createdAt', vmx_rfc3339(u.created_at),
                          'updatedAt', vmx_rfc3339(u.updated_at)) AS doc,
       u.created_at
  FROM users u;

-- current (the caller's own session) is added by the query, which knows
-- the caller's token hash
CREATE VIEW session_docs AS
SELECT s.id, s.user_id, s.token_hash, s.created_at, s.expires_at,
       jsonb_build_object('id', s.id, 'userId', s.user_id,
                          'createdAt', vmx_rfc3339(s.created_at),
                          'lastSeenAt', vmx_rfc3339(s.last_seen_at),
                          'expiresAt', vmx_rfc3339(s.expires_at),
                          'fromAddress', s.from_address) AS doc
  FROM sessions s;
