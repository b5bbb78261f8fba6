-- fdc core schema. docs/database.md explains every table, column and index.

CREATE EXTENSION IF NOT EXISTS citext;

CREATE TABLE schemas (
    schema_id  uuid PRIMARY KEY,
    name       text NOT NULL,
    version    text NOT NULL,
    body       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, version)
);

CREATE TABLE producers (
    producer_id  uuid PRIMARY KEY,
    name         text NOT NULL,
    schema_id    uuid REFERENCES schemas (schema_id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz
);

CREATE TABLE subjects (
    subject_id  uuid PRIMARY KEY,
    subject_key text NOT NULL UNIQUE,
    attrs       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tags (
    tag_id bigserial PRIMARY KEY,
    key    citext NOT NULL,
    value  citext NOT NULL,
    UNIQUE (key, value)
);

-- Global de-duplication: one row per event id ever stored, whatever its partition.
CREATE TABLE event_index (
    event_id uuid PRIMARY KEY,
    ts       timestamptz NOT NULL
);
CREATE INDEX event_index_ts ON event_index (ts);

CREATE TABLE events (
    event_id      uuid NOT NULL,
    ts            timestamptz NOT NULL,
    ts_ns         bigint NOT NULL,
    ts_kernel     timestamptz NOT NULL,
    producer_id   uuid,
    subject_id    uuid,
    schema_id     uuid,
    source_stream text NOT NULL,
    source_id     text NOT NULL,
    consumer      text NOT NULL,
    payload       jsonb NOT NULL,
    PRIMARY KEY (event_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX events_subject_ts ON events (subject_id, ts);

CREATE TABLE event_tags (
    event_id uuid NOT NULL,
    tag_id   bigint NOT NULL,
    ts       timestamptz NOT NULL,
    PRIMARY KEY (event_id, tag_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX event_tags_tag_ts ON event_tags (tag_id, ts);
