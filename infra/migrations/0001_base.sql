-- twinflow storage, base tables (plain PostgreSQL; the TimescaleDB layer, when the extension
-- is present, turns the time-series tables into hypertables afterwards).
--
-- Every table has a unique key that a replayed write hits, so the sink's
-- INSERT ... ON CONFLICT makes a batch written twice store its rows once.

CREATE SCHEMA IF NOT EXISTS twinflow;

-- Codes of the `quality` column of telemetry (operators.records.Quality).
CREATE TABLE twinflow.quality (
    code smallint PRIMARY KEY,
    name text NOT NULL UNIQUE
);
INSERT INTO twinflow.quality (code, name) VALUES
    (0, 'good'), (1, 'uncertain'), (2, 'bad'), (3, 'stale'), (4, 'substituted');

-- Raw readings, one row per twin, signal and timestamp. A reading with no value (NaN, a
-- dropout) is not stored.
CREATE TABLE twinflow.telemetry (
    twin_id text NOT NULL,
    signal text NOT NULL,
    time timestamptz NOT NULL,
    value double precision NOT NULL,
    quality smallint NOT NULL DEFAULT 0,
    CONSTRAINT telemetry_key PRIMARY KEY (twin_id, signal, time)
);
CREATE INDEX telemetry_time_brin ON twinflow.telemetry USING brin (time);

-- Features of one twin over the event-time window [window_start, window_end). A window
-- computed again (late data, replay) replaces the stored one.
CREATE TABLE twinflow.window_features (
    twin_id text NOT NULL,
    twin_type text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    features jsonb NOT NULL,
    counts jsonb NOT NULL DEFAULT '{}',
    late integer NOT NULL DEFAULT 0,
    anomaly_score double precision,
    anomaly_threshold double precision,
    rul_indicator text,
    rul_hours double precision,
    rul_low_hours double precision,
    rul_high_hours double precision,
    health double precision,
    CONSTRAINT window_features_key PRIMARY KEY (twin_id, window_start)
);
CREATE INDEX window_features_start_brin ON twinflow.window_features USING brin (window_start);

-- Latest reported state per twin (upserted; an older state never overwrites a newer one).
-- signals: {"<signal>": {"value": .., "time": "<ISO UTC>", "quality": "good", "stale": false}}
CREATE TABLE twinflow.twin_state (
    twin_id text PRIMARY KEY,
    twin_type text NOT NULL,
    time timestamptz NOT NULL,
    status text NOT NULL,
    signals jsonb NOT NULL,
    readings bigint NOT NULL DEFAULT 0,
    dead_letters bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every state a twin reported, by event time.
CREATE TABLE twinflow.twin_state_history (
    twin_id text NOT NULL,
    twin_type text NOT NULL,
    time timestamptz NOT NULL,
    status text NOT NULL,
    signals jsonb NOT NULL,
    readings bigint NOT NULL DEFAULT 0,
    dead_letters bigint NOT NULL DEFAULT 0,
    CONSTRAINT twin_state_history_key PRIMARY KEY (twin_id, time)
);
CREATE INDEX twin_state_history_time_brin ON twinflow.twin_state_history USING brin (time);

-- One row per alarm, upserted through its lifecycle: raised, then cleared (cleared is final).
-- alert_id is deterministic (twin, rule, raise time), so a replay updates the same row.
CREATE TABLE twinflow.alerts (
    alert_id text PRIMARY KEY,
    twin_id text NOT NULL,
    twin_type text NOT NULL,
    rule text NOT NULL,
    state text NOT NULL CHECK (state IN ('raised', 'cleared')),
    severity text NOT NULL,
    diagnosis text,
    message text NOT NULL,
    evidence jsonb NOT NULL DEFAULT '{}',
    raised_at timestamptz NOT NULL,
    cleared_at timestamptz,
    -- event time of the newest transition applied to this row
    updated_at timestamptz NOT NULL
);
CREATE INDEX alerts_open_idx ON twinflow.alerts (twin_id) WHERE state = 'raised';
CREATE INDEX alerts_twin_raised_idx ON twinflow.alerts (twin_id, raised_at);

-- Every transition of every alarm.
CREATE TABLE twinflow.alert_events (
    alert_id text NOT NULL,
    state text NOT NULL,
    time timestamptz NOT NULL,
    twin_id text NOT NULL,
    rule text NOT NULL,
    severity text NOT NULL,
    diagnosis text,
    message text NOT NULL,
    evidence jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT alert_events_key PRIMARY KEY (alert_id, state, time)
);
CREATE INDEX alert_events_twin_idx ON twinflow.alert_events (twin_id, time);

-- Status history of commands: one row per command and status it reached.
CREATE TABLE twinflow.commands (
    command_id text NOT NULL,
    status text NOT NULL,
    twin_id text NOT NULL,
    twin_type text NOT NULL,
    name text NOT NULL,
    params jsonb NOT NULL DEFAULT '{}',
    issued_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    reason text NOT NULL DEFAULT '',
    detail text NOT NULL DEFAULT '',
    -- database time the status was first stored (a replay keeps the first)
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT commands_key PRIMARY KEY (command_id, status)
);
CREATE INDEX commands_twin_idx ON twinflow.commands (twin_id, issued_at);

-- Inputs that could not be used. dead_letter_id is a hash of the dead letter's JSON, so a
-- replayed dead letter is stored once.
CREATE TABLE twinflow.dead_letters (
    dead_letter_id text PRIMARY KEY,
    time timestamptz NOT NULL,
    stage text NOT NULL,
    reason text NOT NULL,
    source text NOT NULL,
    twin_id text,
    readings integer NOT NULL DEFAULT 0,
    payload text NOT NULL DEFAULT '',
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_time_brin ON twinflow.dead_letters USING brin (time);
CREATE INDEX dead_letters_twin_idx ON twinflow.dead_letters (twin_id, time);
