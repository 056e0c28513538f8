-- See the PostgreSQL file for what each table is for. Times are Unix seconds.
CREATE TABLE sync_lease (
    target     TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    process    TEXT    NOT NULL,
    run_id     INTEGER,
    taken_at   INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

ALTER TABLE sync_checkpoint ADD COLUMN fresh_at INTEGER;
ALTER TABLE sync_checkpoint ADD COLUMN settled_at INTEGER;
ALTER TABLE sync_checkpoint ADD COLUMN settle_remote INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_checkpoint ADD COLUMN settle_stored INTEGER NOT NULL DEFAULT 0;

CREATE TABLE sync_gap_reason (
    workspace TEXT    NOT NULL,
    start_at  INTEGER NOT NULL,
    end_at    INTEGER NOT NULL,
    reason    TEXT    NOT NULL,
    retry     INTEGER NOT NULL,
    PRIMARY KEY (workspace, start_at, end_at)
);

CREATE TABLE sync_meta (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE activity_target (
    target    TEXT    NOT NULL,
    source_id TEXT    NOT NULL,
    timestamp INTEGER NOT NULL,
    PRIMARY KEY (target, source_id)
);
CREATE INDEX activity_target_time_idx ON activity_target (target, timestamp);
INSERT OR IGNORE INTO activity_target (target, source_id, timestamp)
    SELECT workspace_id, source_id, timestamp FROM activity_log WHERE source = 'tapd' AND source_id IS NOT NULL;

CREATE TABLE activity_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    activity_id INTEGER NOT NULL,
    source_id   TEXT    NOT NULL,
    changed_at  INTEGER NOT NULL,
    previous    TEXT    NOT NULL
);
CREATE INDEX activity_history_activity_idx ON activity_history (activity_id, id);

CREATE INDEX sync_run_started_idx ON sync_run (started_at);
