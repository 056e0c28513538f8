-- Who acknowledged a gap (the API token's name; '' before this version).
ALTER TABLE sync_gap_ack ADD COLUMN acknowledged_by TEXT NOT NULL DEFAULT '';

-- TAPD's own totals per target and calendar month (in TAPD's zone), for the
-- completeness report: the span the verified windows of the month cover and
-- TAPD's total for it, and the last settle check's span, total and the
-- records the target had reported in it. One row per month, whatever the
-- number of windows.
CREATE TABLE sync_month_total (
    workspace       TEXT        NOT NULL,
    month_start     TIMESTAMPTZ NOT NULL,
    verified_start  TIMESTAMPTZ,
    verified_end    TIMESTAMPTZ,
    verified_total  BIGINT      NOT NULL DEFAULT 0,
    verified_at     TIMESTAMPTZ,
    settle_start    TIMESTAMPTZ,
    settle_end      TIMESTAMPTZ,
    settle_total    BIGINT      NOT NULL DEFAULT 0,
    settle_reported BIGINT      NOT NULL DEFAULT 0,
    settled_at      TIMESTAMPTZ,
    PRIMARY KEY (workspace, month_start)
);
