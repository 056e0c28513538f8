-- The access trail (issue 23, README "For auditors"): who read, exported or
-- changed the archive. Each row is also an access event in the integrity
-- log (log_idx), written in the transaction of the change it records, or
-- right after the answer for reads, so a row removed or altered with plain
-- SQL is named by verify --database. params: JSON object of strings.
CREATE TABLE access_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER     NOT NULL,
    principal     TEXT        NOT NULL DEFAULT '',
    source_ip     TEXT        NOT NULL DEFAULT '',
    forwarded_for TEXT        NOT NULL DEFAULT '',
    action        TEXT        NOT NULL,
    params        TEXT        NOT NULL DEFAULT '{}',
    row_count     BIGINT      NOT NULL DEFAULT 0,
    outcome       TEXT        NOT NULL,
    log_idx       BIGINT      NOT NULL UNIQUE
);
CREATE INDEX access_log_at_idx ON access_log (at);
CREATE INDEX access_log_principal_idx ON access_log (principal, id);
CREATE INDEX access_log_action_idx ON access_log (action, id);
