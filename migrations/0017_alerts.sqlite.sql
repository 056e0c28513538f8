-- Alerts (README "Alerts"): the rule engine is a cursor over the integrity
-- log. Each rule's cursor, its state and the firings it produced are
-- written in one transaction, so a restart neither loses nor repeats a
-- firing. Times are Unix seconds (0: never).

-- next_idx is the first log index the rule has not evaluated.
CREATE TABLE alert_cursor (
    rule     TEXT   PRIMARY KEY,
    next_idx BIGINT NOT NULL
);

-- A rule's memory per key: a threshold's matches still inside its sliding
-- window, a first_seen key already seen, and when the key last fired
-- (suppression). state is JSON.
CREATE TABLE alert_state (
    rule  TEXT NOT NULL,
    key   TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (rule, key)
);

-- Every firing: the window of record time it covers, how many records
-- matched in it, the first and last of them, and the log index that fired it.
CREATE TABLE alert_firing (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    rule            TEXT   NOT NULL,
    key             TEXT   NOT NULL,
    condition       TEXT   NOT NULL,
    window_start    BIGINT NOT NULL,
    window_end      BIGINT NOT NULL,
    count           BIGINT NOT NULL,
    first_record_id BIGINT NOT NULL,
    last_record_id  BIGINT NOT NULL,
    log_index       BIGINT NOT NULL,
    fired_at        BIGINT NOT NULL,
    -- the console search of its records, without times (user=…&action=…)
    search          TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX alert_firing_rule_idx ON alert_firing (rule, id);

-- One row per firing and notifier it is sent to: pending until sent.
CREATE TABLE alert_delivery (
    firing_id  BIGINT  NOT NULL,
    notifier   TEXT    NOT NULL,
    status     TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT    NOT NULL DEFAULT '',
    sent_at    BIGINT  NOT NULL DEFAULT 0,
    grouped    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (firing_id, notifier)
);
CREATE INDEX alert_delivery_pending_idx ON alert_delivery (notifier, status, firing_id);
