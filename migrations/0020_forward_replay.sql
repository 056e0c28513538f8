-- Forwarding replay (README "Forwarding"): replay_from is a pending request
-- to resend a destination's events from that index, set together with
-- next_idx by POST /api/v1/forward/{name}/replay or tapd-mirror forward
-- replay (maybe another process than the one forwarding). The forwarder
-- takes it (setting it back to NULL) before its next batch, so a cursor it
-- saves for the batch in flight cannot undo the replay.
ALTER TABLE forward_cursor ADD COLUMN replay_from BIGINT;
