-- fdc auth schema (issue 4). docs/database.md ("Auth tables") explains every table and column.

-- Revocation of a producer: every token whose `sub` is this producer is refused once the
-- kernels' revocation caches expire (auth.cache_ttl).
ALTER TABLE producers
    ADD COLUMN revoked_at     timestamptz,
    ADD COLUMN revoked_reason text;

-- One row per producer key (Ed25519) ever seen on the registration stream.
CREATE TABLE producer_keys (
    fingerprint     text PRIMARY KEY,          -- lowercase hex SHA-256 of the raw public key
    public_key      bytea NOT NULL CHECK (length(public_key) = 32),
    producer_id     uuid REFERENCES producers (producer_id),  -- set on approval
    status          text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'revoked')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    decided_at      timestamptz,
    decision_reason text
);
CREATE INDEX producer_keys_producer ON producer_keys (producer_id);

-- Registration requests waiting for (or having had) an admin decision.
CREATE TABLE producer_registrations (
    registration_id uuid PRIMARY KEY,
    fingerprint     text NOT NULL REFERENCES producer_keys (fingerprint),
    name            text NOT NULL,
    schema          text,
    status          text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    requested_at    timestamptz NOT NULL DEFAULT now(),
    decided_at      timestamptz,
    decision_reason text,
    producer_id     uuid REFERENCES producers (producer_id)
);
-- At most one open request per key: repeated requests while pending do not pile up.
CREATE UNIQUE INDEX producer_registrations_one_pending
    ON producer_registrations (fingerprint) WHERE status = 'pending';
CREATE INDEX producer_registrations_status ON producer_registrations (status, requested_at);

-- Nonces of accepted (correctly signed, fresh) registration requests: replay protection, and
-- the per-key request count for the registration rate limit.
CREATE TABLE auth_nonces (
    fingerprint text NOT NULL,
    nonce       text NOT NULL,
    used_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fingerprint, nonce)
);
CREATE INDEX auth_nonces_used_at ON auth_nonces (used_at);

-- Every token the kernel issued (never the token itself): audit trail.
CREATE TABLE auth_tokens_issued (
    jti         text PRIMARY KEY,
    producer_id uuid NOT NULL REFERENCES producers (producer_id),
    fingerprint text,                          -- the key it was sealed to; NULL when via admin
    via         text NOT NULL CHECK (via IN ('register', 'admin')),
    kid         text NOT NULL,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX auth_tokens_issued_producer ON auth_tokens_issued (producer_id, issued_at);

-- Every admin decision, with time and reason.
CREATE TABLE auth_decisions (
    decision_id bigserial PRIMARY KEY,
    decided_at  timestamptz NOT NULL DEFAULT now(),
    action      text NOT NULL CHECK (action IN ('approve', 'reject', 'revoke_producer', 'revoke_key', 'issue_token')),
    target      text NOT NULL,                 -- registration id, producer id or fingerprint
    producer_id uuid,
    reason      text NOT NULL
);
