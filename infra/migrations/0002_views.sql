-- Views and functions that users and dashboards query. They read the same on plain
-- PostgreSQL and on TimescaleDB (where the TimescaleDB layer replaces telemetry_1m with a
-- continuous aggregate of the same columns, and signal_minutes with a version reading it).

-- Latest state of every twin, one row per twin and signal.
CREATE VIEW twinflow.twin_latest AS
SELECT
    s.twin_id,
    s.twin_type,
    s.status,
    s.time AS state_time,
    now() - s.time AS age,
    sig.key AS signal,
    (sig.value ->> 'value')::double precision AS value,
    (sig.value ->> 'time')::timestamptz AS signal_time,
    sig.value ->> 'quality' AS quality,
    (sig.value ->> 'stale')::boolean AS stale
FROM twinflow.twin_state AS s
LEFT JOIN LATERAL jsonb_each(s.signals) AS sig ON true;

-- Alarms raised and not cleared yet.
CREATE VIEW twinflow.alerts_open AS
SELECT
    alert_id,
    twin_id,
    twin_type,
    rule,
    severity,
    diagnosis,
    message,
    evidence,
    raised_at,
    updated_at,
    now() - raised_at AS open_for
FROM twinflow.alerts
WHERE state = 'raised';

-- Per-minute statistics of each signal of each twin (computed on read here; a continuous
-- aggregate on TimescaleDB).
CREATE VIEW twinflow.telemetry_1m AS
SELECT
    date_bin(INTERVAL '1 minute', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
    twin_id,
    signal,
    count(value) AS samples,
    avg(value) AS mean,
    min(value) AS min,
    max(value) AS max,
    stddev_samp(value) AS stddev
FROM twinflow.telemetry
GROUP BY 1, 2, 3;

-- Per-minute statistics of one signal of one twin over [p_from, p_to): reads only the rows
-- of that range (use it rather than filtering telemetry_1m on bucket).
CREATE FUNCTION twinflow.signal_minutes(
    p_twin_id text, p_signal text, p_from timestamptz, p_to timestamptz
)
RETURNS TABLE (
    bucket timestamptz,
    samples bigint,
    mean double precision,
    min double precision,
    max double precision,
    stddev double precision
)
LANGUAGE sql STABLE AS $$
    SELECT
        date_bin(INTERVAL '1 minute', t.time, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
        count(t.value), avg(t.value), min(t.value), max(t.value), stddev_samp(t.value)
    FROM twinflow.telemetry AS t
    WHERE t.twin_id = p_twin_id AND t.signal = p_signal
      AND t.time >= p_from AND t.time < p_to
    GROUP BY 1
    ORDER BY 1
$$;

-- Order of command statuses: a command moves to a higher step, never back.
CREATE FUNCTION twinflow.command_status_step(status text)
RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE status
        WHEN 'issued' THEN 1
        WHEN 'sent' THEN 2
        WHEN 'acknowledged' THEN 3
        ELSE 4  -- end states: succeeded, failed, timed_out, expired, rejected
    END
$$;

-- Every status every command reached, in order.
CREATE VIEW twinflow.command_history AS
SELECT
    command_id,
    twin_id,
    twin_type,
    name,
    params,
    status,
    twinflow.command_status_step(status) AS step,
    detail,
    reason,
    issued_at,
    expires_at,
    recorded_at
FROM twinflow.commands;

-- The current status of each command.
CREATE VIEW twinflow.commands_latest AS
SELECT DISTINCT ON (command_id) *
FROM twinflow.command_history
ORDER BY command_id, step DESC, recorded_at DESC;
