-- Who acknowledged a gap (the API token's name; '' before this version).
ALTER TABLE sync_gap_ack ADD COLUMN acknowledged_by TEXT NOT NULL DEFAULT '';

-- TAPD's own totals per target and calendar month (in TAPD's zone), for the
-- completeness report: the span the verified windows of the month cover and
-- TAPD's total for it, and the last settle check's span, total and the
-- records the target had reported in it. One row per month, whatever the
-- number of windows.
CREATE TABLE sync_month_total (
    workspace       TEXT        NOT NULL,
    month_start     INTEGER     NOT NULL,
    verified_start  INTEGER,
    verified_end    INTEGER,
    verified_total  INTEGER     NOT NULL DEFAULT 0,
    verified_at     INTEGER,
    settle_start    INTEGER,
    settle_end      INTEGER,
    settle_total    INTEGER     NOT NULL DEFAULT 0,
    settle_reported INTEGER     NOT NULL DEFAULT 0,
    settled_at      INTEGER,
    PRIMARY KEY (workspace, month_start)
);
