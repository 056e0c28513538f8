CREATE TABLE sync_gap_ack (
    workspace       TEXT    NOT NULL,
    start_at        INTEGER NOT NULL,
    end_at          INTEGER NOT NULL,
    acknowledged_at INTEGER NOT NULL,
    note            TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (workspace, start_at, end_at)
);
