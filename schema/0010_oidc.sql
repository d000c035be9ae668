-- OpenID Connect sign-on (docs/ARCHITECTURE.md, "Single sign-on (OIDC)").
--
-- A user provisioned by a login through the provider is bound to the
-- provider's issuer and subject: the binding, not the username, finds the
-- user at the next login, so a user renamed at the provider keeps the
-- account and a local account with the same username is never taken over.
-- Such a user has no password (an empty hash never verifies).
--
-- A login in progress keeps, for about ten minutes and for a single use,
-- its PKCE verifier, its nonce and the hash of the browser cookie it is
-- bound to, under the SHA-256 of its state.

ALTER TABLE users
    ADD COLUMN oidc_issuer   text,
    ADD COLUMN oidc_subject  text,
    ADD CONSTRAINT users_oidc_bound CHECK ((oidc_issuer IS NULL) = (oidc_subject IS NULL)),
    ADD CONSTRAINT users_oidc_identity UNIQUE (oidc_issuer, oidc_subject);

CREATE TABLE oidc_states (
    state_hash     text PRIMARY KEY,
    browser_hash   text NOT NULL,
    nonce          text NOT NULL,
    code_verifier  text NOT NULL,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX oidc_states_expires_at ON oidc_states (expires_at);
