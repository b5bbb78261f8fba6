-- fdc auth, idempotent registration replies. docs/database.md ("Auth tables") explains it.

-- A registration request whose reply was lost is retried with the same nonce. The reply is
-- kept with the nonce, together with a digest of the signed request, so that the identical
-- request gets the same reply again (an `issued` reply holds the token only sealed to the
-- producer's key). A different request reusing the nonce is still a replay. Both columns are
-- pruned with the nonce (after 2 × auth.register.max_skew).
ALTER TABLE auth_nonces
    ADD COLUMN request_sha256 bytea CHECK (length(request_sha256) = 32),
    ADD COLUMN reply          jsonb;

-- The per-key registration rate limit counts the key's tokens issued within rate_window.
CREATE INDEX auth_tokens_issued_fingerprint
    ON auth_tokens_issued (fingerprint, issued_at) WHERE via = 'register';
