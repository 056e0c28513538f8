-- Gaps an operator has acknowledged: still listed in status, no longer warned about.
CREATE TABLE sync_gap_ack (
    workspace       TEXT        NOT NULL,
    start_at        TIMESTAMPTZ NOT NULL,
    end_at          TIMESTAMPTZ NOT NULL,
    acknowledged_at TIMESTAMPTZ NOT NULL,
    note            TEXT        NOT NULL DEFAULT '',
    PRIMARY KEY (workspace, start_at, end_at)
);
