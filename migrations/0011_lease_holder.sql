-- Who holds each sync lease, precisely enough to tell a dead holder at once
-- instead of waiting for its lease to expire: the host, the process id and
-- the process's start (Linux boot id and /proc/PID/stat starttime), so a pid
-- reused by another process is not taken for the holder. Rows written before
-- this migration have none and are taken over only when they expire.
ALTER TABLE sync_lease ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE sync_lease ADD COLUMN pid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_lease ADD COLUMN started TEXT NOT NULL DEFAULT '';
