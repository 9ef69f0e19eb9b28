-- Replication (issue 18): the sync status of each replicated property, and the writes a
-- replica received from the others (what replicated.jsonl holds), for an edge or central
-- instance whose deployment names a database.
--
-- sync_status keeps every status taken (one row per replica, property and time at which it
-- was taken, every status_interval_s): a status taken again at the same time is the same
-- row. sync_status_latest is the newest status of each property per replica.
-- replicated_writes keeps each received write once per receiving replica (its update id is
-- derived from twin, kind, property and stamp, so a resent write lands on the same row).
-- Both are plain tables (not hypertables): their volume is that of property changes.

CREATE TABLE twinflow.sync_status (
    replica text NOT NULL,
    twin_id text NOT NULL,
    kind text NOT NULL,
    property text NOT NULL,
    time timestamptz NOT NULL,                 -- when the status was taken (at_ms)
    state text NOT NULL CHECK (state IN ('in_sync', 'pending', 'conflict', 'link_down')),
    consistency text NOT NULL,
    lag_ms bigint NOT NULL,
    update_id text,
    conflicts integer NOT NULL DEFAULT 0,
    link_down_since timestamptz,               -- while the link is down, else null
    CONSTRAINT sync_status_key PRIMARY KEY (replica, twin_id, kind, property, time)
);
CREATE INDEX sync_status_time_brin ON twinflow.sync_status USING brin (time);

CREATE OR REPLACE VIEW twinflow.sync_status_latest AS
SELECT DISTINCT ON (replica, twin_id, kind, property)
    replica, twin_id, kind, property, time, state, consistency, lag_ms, update_id,
    conflicts, link_down_since
FROM twinflow.sync_status
ORDER BY replica, twin_id, kind, property, time DESC;

CREATE TABLE twinflow.replicated_writes (
    received_by text NOT NULL,
    update_id text NOT NULL,
    twin_id text NOT NULL,
    kind text NOT NULL,
    property text NOT NULL,
    value jsonb,
    stamp_wall_ms bigint NOT NULL,
    stamp_logical integer NOT NULL,
    writer text NOT NULL,                      -- the replica that made the write
    base jsonb,                                -- the stamp the writer held, or null
    outcome text NOT NULL CHECK (outcome IN ('won', 'lost')),
    received_at timestamptz NOT NULL,
    CONSTRAINT replicated_writes_key PRIMARY KEY (received_by, update_id)
);
CREATE INDEX replicated_writes_twin ON twinflow.replicated_writes (twin_id, kind, property);
CREATE INDEX replicated_writes_received_brin ON twinflow.replicated_writes
    USING brin (received_at);
