-- fdc payload schemas. docs/database.md ("Schema registry") and docs/schemas.md explain it.

-- `version` is a semantic version (checked by the kernel before it inserts). A deprecated
-- version keeps validating for the producers already bound to it; no new binding picks it.
ALTER TABLE schemas
    ADD COLUMN deprecated_at     timestamptz,
    ADD COLUMN deprecated_reason text;

-- A producer's binding: `name` (the newest version), `name@<semver requirement>` (`^1.2`,
-- `>=1, <2`) or `name@1.2.0` (exactly that version). The kernel resolves it to a schema_id.
-- It replaces `producers.schema_id`, which named one version and is no longer written.
ALTER TABLE producers ADD COLUMN schema_binding text;

-- Links made by earlier kernels become exact bindings to the version they named.
UPDATE producers p
   SET schema_binding = s.name || '@=' || s.version
  FROM schemas s
 WHERE p.schema_id = s.schema_id AND p.schema_binding IS NULL;

-- The binding a new producer gets from the `schema` of its token, registration or
-- pre-approval: a schema id becomes an exact binding to that version, a `name` or
-- `name@range` is kept as is; NULL when no schema of that id or name exists.
CREATE FUNCTION fdc_schema_binding(claim text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN s.schema_id::text = claim THEN s.name || '@=' || s.version ELSE claim END
      FROM schemas s
     WHERE s.schema_id::text = claim OR s.name = split_part(claim, '@', 1)
     ORDER BY (s.schema_id::text = claim) DESC
     LIMIT 1
$$;

-- Schema decisions are audited with the other admin decisions; `target` is `name@version`
-- (add, deprecate, delete) or the producer id (bind).
ALTER TABLE auth_decisions DROP CONSTRAINT auth_decisions_action_check;
ALTER TABLE auth_decisions ADD CONSTRAINT auth_decisions_action_check
    CHECK (action IN ('approve', 'reject', 'revoke_producer', 'revoke_key', 'issue_token',
                      'schema_add', 'schema_deprecate', 'schema_delete', 'schema_bind'));
