-- The twin's newest remaining-useful-life estimate on its state (twin state, JSON version 3).
--
-- health: {"indicator": "..", "health": 0.42, "hours": 31.5, "low_hours": 20.2,
--   "high_hours": null} (null hours: unbounded), or null until a window had an estimate.
-- States stored before this migration keep null. A nullable column without a default adds
-- no rewrite and is allowed on a compressed TimescaleDB hypertable, which twin_state_history
-- is when the TimescaleDB layer was applied before this file.

ALTER TABLE twinflow.twin_state
    ADD COLUMN IF NOT EXISTS health jsonb;

ALTER TABLE twinflow.twin_state_history
    ADD COLUMN IF NOT EXISTS health jsonb;

-- Latest remaining-useful-life estimate per twin, with its interval, one row per twin that
-- has one.
CREATE OR REPLACE VIEW twinflow.twin_health_latest AS
SELECT
    s.twin_id,
    s.twin_type,
    s.time AS state_time,
    s.health ->> 'indicator' AS indicator,
    (s.health ->> 'health')::double precision AS health,
    (s.health ->> 'hours')::double precision AS rul_hours,
    (s.health ->> 'low_hours')::double precision AS rul_low_hours,
    (s.health ->> 'high_hours')::double precision AS rul_high_hours
FROM twinflow.twin_state AS s
WHERE s.health IS NOT NULL AND s.health <> 'null'::jsonb;
