-- Asset roll-ups (asset_rollup.v1): for a site, an asset or a twin with components, how many
-- of the telemetry twins it contains are in alarm, by the worst severity each has open, and
-- which twin has the worst health. Stored like twin states: every roll-up in a history table
-- keyed by (asset_id, time), and the latest one per asset in a table upserted so that an
-- older roll-up never overwrites a newer one (a replay after recovery changes nothing).
--
-- in_alarm_info/warning/critical are the in_alarm_by_severity counts of the JSON; they add
-- up to twins_in_alarm. worst_health is 1 healthy .. 0 failed, null (with worst_twin) until
-- some twin has a remaining-useful-life estimate. On TimescaleDB the generated layer
-- 1002_timescaledb_rollups turns asset_rollups into a hypertable.

-- Every roll-up, by event time. A roll-up written again at the same time replaces the row.
CREATE TABLE twinflow.asset_rollups (
    asset_id text NOT NULL,
    asset_type text NOT NULL,
    time timestamptz NOT NULL,
    twins_total integer NOT NULL,
    twins_in_alarm integer NOT NULL,
    in_alarm_info integer NOT NULL DEFAULT 0,
    in_alarm_warning integer NOT NULL DEFAULT 0,
    in_alarm_critical integer NOT NULL DEFAULT 0,
    worst_health double precision,
    worst_twin text,
    CONSTRAINT asset_rollups_key PRIMARY KEY (asset_id, time)
);
CREATE INDEX asset_rollups_time_brin ON twinflow.asset_rollups USING brin (time);

-- The latest roll-up of every asset, one row per asset (upserted; never by an older one).
CREATE TABLE twinflow.asset_rollups_latest (
    asset_id text PRIMARY KEY,
    asset_type text NOT NULL,
    time timestamptz NOT NULL,
    twins_total integer NOT NULL,
    twins_in_alarm integer NOT NULL,
    in_alarm_info integer NOT NULL DEFAULT 0,
    in_alarm_warning integer NOT NULL DEFAULT 0,
    in_alarm_critical integer NOT NULL DEFAULT 0,
    worst_health double precision,
    worst_twin text,
    -- database time the row last changed
    updated_at timestamptz NOT NULL DEFAULT now()
);
