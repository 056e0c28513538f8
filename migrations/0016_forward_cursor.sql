-- Forwarding (README "Forwarding"): each destination is a cursor over the
-- integrity log. next_idx is the first index the destination has not yet
-- acknowledged; it moves only after an ack, so a restart resends at most the
-- batch in flight (at-least-once, duplicates recognisable by their index).
-- The rest is its delivery status, kept across restarts so that dead_after
-- counts from the first failure, not from the last start. Times are Unix
-- seconds (0: never).
CREATE TABLE forward_cursor (
    name          TEXT   PRIMARY KEY,
    next_idx      BIGINT NOT NULL,
    last_success  BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT   NOT NULL DEFAULT '',
    failing_since BIGINT NOT NULL DEFAULT 0
);
