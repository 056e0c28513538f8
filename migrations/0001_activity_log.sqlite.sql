-- The common activity-log table: the contract's fields plus mirror columns.
-- SQLite has no time type: times are INTEGER Unix seconds (UTC).
CREATE TABLE activity_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    platform      TEXT    NOT NULL,
    serial        TEXT    NOT NULL DEFAULT '',
    action_type   TEXT    NOT NULL,
    action_detail TEXT    NOT NULL DEFAULT '',
    username      TEXT    NOT NULL DEFAULT '',
    timestamp     INTEGER NOT NULL,
    source        TEXT    NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'tapd')),
    source_id     TEXT,
    workspace_id  TEXT    NOT NULL DEFAULT '',
    extra         TEXT    NOT NULL DEFAULT '{}',
    ingested_at   INTEGER NOT NULL
);

CREATE UNIQUE INDEX activity_log_source_key ON activity_log (source, source_id);
CREATE INDEX activity_log_time_idx        ON activity_log (timestamp DESC, id DESC);
CREATE INDEX activity_log_platform_idx    ON activity_log (platform, timestamp DESC, id DESC);
CREATE INDEX activity_log_serial_idx      ON activity_log (serial, timestamp DESC, id DESC);
CREATE INDEX activity_log_action_type_idx ON activity_log (action_type, timestamp DESC, id DESC);
CREATE INDEX activity_log_username_idx    ON activity_log (username, timestamp DESC, id DESC);
CREATE INDEX activity_log_workspace_idx   ON activity_log (workspace_id, timestamp);

CREATE TABLE activity_tombstone (
    source      TEXT    NOT NULL,
    source_id   TEXT    NOT NULL,
    deleted_at  INTEGER NOT NULL,
    PRIMARY KEY (source, source_id)
);
