-- The keyring of the secrets (docs/ARCHITECTURE.md, "Secrets and the
-- keyring").  Key material never comes here: a local key lives in a file of
-- each control plane (VMX_MASTER_KEY_FILE, VMX_SECRET_KEYS_DIR), an aws-kms
-- key in AWS KMS.  This table holds what the control planes of a cluster
-- must agree on: which key encrypts new secrets (exactly one active), which
-- still decrypt, which are retired (no secret uses them any more, and no
-- control plane loads them).
--
-- key_id is the id every blob carries ("v1:<key_id>:..."): the first 8 hex
-- characters of BLAKE2b of the key (local) or of "aws-kms:<KMS key id>".
-- The first key (the master key of a deployment from before the keyring) is
-- registered by the control plane at start, since only it knows the id.

CREATE TABLE encryption_keys (
    id          uuid PRIMARY KEY,
    key_id      text NOT NULL UNIQUE CHECK (key_id ~ '^[0-9a-f]{8}$'),
    provider    text NOT NULL CHECK (provider IN ('local', 'aws-kms')),
    state       text NOT NULL CHECK (state IN ('active', 'decrypt-only', 'retired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX encryption_keys_one_active ON encryption_keys (state)
    WHERE state = 'active';

-- Re-encrypting a secret under another key changes the secrets column but
-- not the plain text the data planes get: the background re-encryption sets
-- vmx.reencrypt in its transactions (SET LOCAL), which then bump no config
-- version, so no data plane reloads for it.
CREATE OR REPLACE FUNCTION vmx_bump_config_version() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF coalesce(current_setting('vmx.reencrypt', true), '') <> 'on' THEN
        UPDATE config_version SET version = version + 1;
    END IF;
    RETURN NULL;
END $$;

-- the key ids of a connection's secret blobs, one row per secret
CREATE FUNCTION vmx_secret_key_ids(secrets jsonb) RETURNS SETOF text
    LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT split_part(value, ':', 2) FROM jsonb_each_text(secrets) $$;

CREATE VIEW encryption_key_docs AS
SELECT k.id, k.created_at,
       jsonb_build_object('id', k.id, 'keyId', k.key_id, 'provider', k.provider,
                          'state', k.state,
                          'secretCount', (SELECT count(*) FROM connections c,
                                                 vmx_secret_key_ids(c.secrets) s
                                           WHERE s = k.key_id),
                          'createdAt', vmx_rfc3339(k.created_at),
                          'updatedAt', vmx_rfc3339(k.updated_at)) AS doc
  FROM encryption_keys k;

-- The keys of the deployment's secrets are an administrator's: a power user
-- may read the ring (encryption-key:list) but not change it.
UPDATE roles
   SET policy = jsonb_set(policy, '{statements}', policy->'statements' ||
           '[{"effect": "deny", "actions": ["encryption-key:create", "encryption-key:update"],
              "resources": ["*"]}]'),
       description = 'Everything but changes to users, roles and the secrets'' keyring, in the'
                     ' workspaces the user is a member of.',
       updated_at = now()
 WHERE id = '00000000-0000-4000-8000-000000000003';
