-- Per-UTC-hour record counts (without serial), kept beside the daily counts
-- in the same transactions: a count with since/until sums whole days from
-- activity_daily, the whole hours of the partial edge days from here, and
-- counts only the partial hours in activity_log, so it costs the same at
-- 30M rows as at 1M (issue 15). hour: hours since 1970-01-01 00:00 UTC, no
-- zone, so a change of timezone leaves these rows as they are.
CREATE TABLE activity_hourly (
    hour        INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    platform    TEXT    NOT NULL,
    action_type TEXT    NOT NULL,
    n           BIGINT  NOT NULL,
    PRIMARY KEY (hour, source, platform, action_type)
);

-- An upgrade counts the rows already stored, in one pass (timestamp is
-- Unix seconds here; the expression floors before 1970 as Go does).
INSERT INTO activity_hourly (hour, source, platform, action_type, n)
SELECT (timestamp - ((timestamp % 3600) + 3600) % 3600) / 3600, source, platform, action_type, COUNT(*)
FROM activity_log GROUP BY 1, 2, 3, 4;
