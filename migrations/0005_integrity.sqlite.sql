-- See the PostgreSQL file for what each table is for. Times are Unix seconds.
-- SQLite serializes writers (immediate transactions), so appends need no row lock.
CREATE TABLE integrity_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    tree_size      INTEGER NOT NULL,
    root           BLOB    NOT NULL,
    edge           BLOB    NOT NULL,
    upgrade_max_id INTEGER NOT NULL,
    backfilled_to  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO integrity_state (id, tree_size, root, edge, upgrade_max_id)
    SELECT 1, 0, X'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', X'',
           COALESCE(MAX(id), 0) FROM activity_log;

CREATE TABLE integrity_hash (
    idx    INTEGER PRIMARY KEY,
    hashes BLOB    NOT NULL
);

CREATE TABLE integrity_event (
    idx       INTEGER PRIMARY KEY,
    kind      TEXT    NOT NULL,
    record_id INTEGER NOT NULL,
    body      BLOB,
    leaf_hash BLOB    NOT NULL
);
CREATE INDEX integrity_event_record_idx ON integrity_event (record_id, idx);

CREATE TABLE integrity_checkpoint (
    tree_size INTEGER PRIMARY KEY,
    root      BLOB    NOT NULL,
    signed    TEXT    NOT NULL,
    signed_at INTEGER NOT NULL
);

CREATE TABLE legal_hold (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    filter         TEXT    NOT NULL,
    created_by     TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    released_at    INTEGER,
    released_by    TEXT    NOT NULL DEFAULT '',
    release_reason TEXT    NOT NULL DEFAULT ''
);
