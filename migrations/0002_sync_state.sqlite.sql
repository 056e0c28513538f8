CREATE TABLE sync_checkpoint (
    workspace  TEXT    PRIMARY KEY,
    origin     INTEGER NOT NULL, -- start of the first committed window: gaps are looked for after it
    high_water INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE sync_coverage (
    workspace TEXT    NOT NULL,
    start_at  INTEGER NOT NULL,
    end_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace, start_at)
);

CREATE TABLE sync_run (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace    TEXT    NOT NULL,
    trigger      TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    window_start INTEGER,
    window_end   INTEGER,
    windows      INTEGER NOT NULL DEFAULT 0,
    pages        INTEGER NOT NULL DEFAULT 0,
    requests     INTEGER NOT NULL DEFAULT 0,
    fetched      INTEGER NOT NULL DEFAULT 0,
    inserted     INTEGER NOT NULL DEFAULT 0,
    updated      INTEGER NOT NULL DEFAULT 0,
    unchanged    INTEGER NOT NULL DEFAULT 0,
    suppressed   INTEGER NOT NULL DEFAULT 0,
    remote_total INTEGER NOT NULL DEFAULT 0,
    warnings     TEXT    NOT NULL DEFAULT '[]',
    error        TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX sync_run_workspace_idx ON sync_run (workspace, id DESC);
