-- Desired and reported properties of twins (twin state, JSON version 2).
--
-- properties: {"<property>": {"desired": .., "desired_version": 1, "desired_at": "<ISO UTC>",
--   "reported": .., "reported_version": 3, "reported_at": "<ISO UTC>", "in_sync": true}}
-- (null desired/reported/times: not known yet). States stored before this migration keep
-- '{}'. A constant default adds the column without rewriting the table, and is allowed on a
-- compressed TimescaleDB hypertable (TimescaleDB 2.6 or newer), which twin_state_history is
-- when the TimescaleDB layer was applied before this file. IF NOT EXISTS keeps the file
-- harmless where the column exists already.

ALTER TABLE twinflow.twin_state
    ADD COLUMN IF NOT EXISTS properties jsonb NOT NULL DEFAULT '{}';

ALTER TABLE twinflow.twin_state_history
    ADD COLUMN IF NOT EXISTS properties jsonb NOT NULL DEFAULT '{}';

-- Latest desired and reported side of every property of every twin, one row per twin and
-- property. (twin_latest stays one row per twin and signal, as 0002 made it.)
CREATE OR REPLACE VIEW twinflow.twin_properties_latest AS
SELECT
    s.twin_id,
    s.twin_type,
    s.status,
    s.time AS state_time,
    p.key AS property,
    (p.value ->> 'desired')::double precision AS desired,
    (p.value ->> 'desired_version')::bigint AS desired_version,
    (p.value ->> 'desired_at')::timestamptz AS desired_at,
    (p.value ->> 'reported')::double precision AS reported,
    (p.value ->> 'reported_version')::bigint AS reported_version,
    (p.value ->> 'reported_at')::timestamptz AS reported_at,
    (p.value ->> 'in_sync')::boolean AS in_sync
FROM twinflow.twin_state AS s
CROSS JOIN LATERAL jsonb_each(s.properties) AS p;
