-- Results: one row per stream per event-time minute (SPEC §3). The seed's
-- columns come first; money is exact: integer cents, with donations_usd
-- derived as NUMERIC so SQL readers see dollars to the cent.
CREATE TABLE stream_metrics_minute (
    window_start    TIMESTAMPTZ NOT NULL,
    window_end      TIMESTAMPTZ NOT NULL,
    stream_id       TEXT        NOT NULL,
    active_viewers  BIGINT      NOT NULL,
    chat_messages   BIGINT      NOT NULL,
    donations_usd   NUMERIC(20, 2) GENERATED ALWAYS AS (donations_cents::NUMERIC / 100) STORED,
    donations_cents BIGINT      NOT NULL,
    events          BIGINT      NOT NULL,
    chat_chars      BIGINT      NOT NULL,
    donations       BIGINT      NOT NULL,
    viewer_joins    BIGINT      NOT NULL,
    viewer_leaves   BIGINT      NOT NULL,
    unique_chatters BIGINT      NOT NULL,
    is_final        BOOLEAN     NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, stream_id)
);
CREATE INDEX stream_metrics_minute_stream_idx ON stream_metrics_minute (stream_id, window_start);

-- Each stream's current state (SPEC §3).
CREATE TABLE stream_state (
    stream_id      TEXT        PRIMARY KEY,
    is_live        BOOLEAN     NOT NULL,
    active_viewers BIGINT      NOT NULL,
    last_event_at  TIMESTAMPTZ,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Rejected messages with their provenance; a replay writes each at most once.
CREATE TABLE dead_letters (
    id           BIGSERIAL   PRIMARY KEY,
    topic        TEXT        NOT NULL,
    partition    INTEGER     NOT NULL,
    kafka_offset BIGINT      NOT NULL,
    reason       TEXT        NOT NULL,
    error        TEXT        NOT NULL,
    payload      BYTEA       NOT NULL,
    kafka_key    BYTEA,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, kafka_offset)
);
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason);

-- The next offset to read per partition, committed with the results (SPEC §4).
CREATE TABLE consumer_offsets (
    group_id    TEXT        NOT NULL,
    topic       TEXT        NOT NULL,
    partition   INTEGER     NOT NULL,
    next_offset BIGINT      NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- The window model of each stream (presence set, watermark, open-window
-- partials), so a restart continues exactly where the checkpoint stopped.
CREATE TABLE window_snapshots (
    stream_id  TEXT        PRIMARY KEY,
    topic      TEXT        NOT NULL,
    partition  INTEGER     NOT NULL,
    state      JSONB       NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX window_snapshots_partition_idx ON window_snapshots (topic, partition);
