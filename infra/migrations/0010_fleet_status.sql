-- Site summaries (fleet_status.v1): what a central instance's roll-ups across sites say of
-- each edge site and of the whole fleet (site = the fleet id), until now only in
-- fleet_status.jsonl and the twinflow_fleet_* gauges. Stored like the asset roll-ups of
-- 0005: every summary in a history table, and the newest per site in a table upserted so
-- that an older summary never overwrites a newer one.
--
-- The figures an operator filters or sorts on are columns; the whole document is in doc
-- (the counts by status, by rule and the edge's own link report are read from there).
-- in_alarm_info/warning/critical are the in_alarm_by_severity counts, as in asset_rollups.
-- The *_ms fields of the document are timestamptz columns here.
--
-- A summary's time is the stamp of its site's newest write, so two different summaries can
-- share it (a site that goes silent, or the central link going down, changes the summary
-- without a write). The history therefore keys on (site, time, digest), digest being the md5
-- of the document: a summary written twice (a retried batch, a replay after recovery) is
-- one row, and two summaries of the same time are two rows (stored_at orders them).
--
-- Plain tables, not hypertables: one row per site each time its summary changes (at most
-- every 0.2 s per site, usually far fewer), the volume of property changes like 0008's
-- tables, so there is no TimescaleDB layer for them.

CREATE TABLE twinflow.fleet_status (
    site text NOT NULL,                        -- an edge's replica id, or the fleet id
    time timestamptz NOT NULL,                 -- the stamp of the site's newest write
    sites integer NOT NULL,                    -- 1 for a site, the sites for the fleet
    twins_reporting integer NOT NULL,
    twins_in_alarm integer NOT NULL,
    in_alarm_info integer NOT NULL DEFAULT 0,
    in_alarm_warning integer NOT NULL DEFAULT 0,
    in_alarm_critical integer NOT NULL DEFAULT 0,
    commands_in_flight integer NOT NULL,
    worst_health double precision,             -- 1 healthy .. 0 failed; null: no estimate
    worst_twin text,
    lowest_rul_h double precision,             -- the shortest finite RUL, hours
    lowest_rul_twin text,
    link text NOT NULL,                        -- up, silent or down
    link_since timestamptz,                    -- silent: the last write; down: since when
    last_received timestamptz,                 -- the central instance's last receipt
    central_pending integer NOT NULL DEFAULT 0,
    edge_connected boolean,                    -- the edge's own report; null until one came
    edge_pending integer,
    doc jsonb NOT NULL,                        -- the whole fleet_status.v1 document
    digest text GENERATED ALWAYS AS (md5(doc::text)) STORED,
    -- database clock when the row was first stored (orders summaries of one time)
    stored_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT fleet_status_key PRIMARY KEY (site, time, digest)
);
CREATE INDEX fleet_status_time_brin ON twinflow.fleet_status USING brin (time);

-- The newest summary of every site (and of the fleet), one row per site: upserted, never by
-- a summary of an older time (nor, at the same time, of an older last receipt).
CREATE TABLE twinflow.fleet_status_latest (
    site text PRIMARY KEY,
    time timestamptz NOT NULL,
    sites integer NOT NULL,
    twins_reporting integer NOT NULL,
    twins_in_alarm integer NOT NULL,
    in_alarm_info integer NOT NULL DEFAULT 0,
    in_alarm_warning integer NOT NULL DEFAULT 0,
    in_alarm_critical integer NOT NULL DEFAULT 0,
    commands_in_flight integer NOT NULL,
    worst_health double precision,
    worst_twin text,
    lowest_rul_h double precision,
    lowest_rul_twin text,
    link text NOT NULL,
    link_since timestamptz,
    last_received timestamptz,
    central_pending integer NOT NULL DEFAULT 0,
    edge_connected boolean,
    edge_pending integer,
    doc jsonb NOT NULL,
    -- database time the row last changed
    updated_at timestamptz NOT NULL DEFAULT now()
);
