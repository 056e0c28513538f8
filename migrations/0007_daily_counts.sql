-- Per-day record counts, maintained in the same transaction as every insert,
-- delete, update and purge, so counts cost the same at 100M rows as at 1M.
-- day: days since 1970-01-01 of the record's date in the configured
-- timezone (sync_meta 'counts.timezone'); whole days are summed here, the
-- partial days at the edges of since/until counted in activity_log.
CREATE TABLE activity_daily (
    day         INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    platform    TEXT    NOT NULL,
    serial      TEXT    NOT NULL,
    action_type TEXT    NOT NULL,
    n           BIGINT  NOT NULL,
    PRIMARY KEY (day, source, platform, serial, action_type)
);
CREATE INDEX activity_daily_serial_idx ON activity_daily (serial, day);

-- The same without serial (the dimension with most values): what counts
-- that do not filter by serial sum, a few rows a day.
CREATE TABLE activity_daily_total (
    day         INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    platform    TEXT    NOT NULL,
    action_type TEXT    NOT NULL,
    n           BIGINT  NOT NULL,
    PRIMARY KEY (day, source, platform, action_type)
);
