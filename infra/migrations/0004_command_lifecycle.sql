-- The command lifecycle of command JSON version 2: the status "queued" between "issued" and
-- "sent", and who decided a command (origin), when each status was reached (status_at, the
-- flow's reference clock) and how many delivery attempts it took (attempt). Rows stored
-- before this migration keep origin 'policy', no status_at and attempt 0.

ALTER TABLE twinflow.commands
    ADD COLUMN IF NOT EXISTS origin text NOT NULL DEFAULT 'policy',
    ADD COLUMN IF NOT EXISTS status_at timestamptz,
    ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 0;

-- The order of the statuses, now with "queued": an end state always ranks last.
CREATE OR REPLACE FUNCTION twinflow.command_status_step(status text)
RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE status
        WHEN 'issued' THEN 1
        WHEN 'queued' THEN 2
        WHEN 'sent' THEN 3
        WHEN 'acknowledged' THEN 4
        ELSE 5  -- end states: succeeded, failed, timed_out, expired, rejected
    END
$$;

-- Every status every command reached, in order (the new columns at the end).
DROP VIEW IF EXISTS twinflow.commands_latest;
CREATE OR REPLACE VIEW twinflow.command_history AS
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
    recorded_at,
    origin,
    status_at,
    attempt
FROM twinflow.commands;

-- The current status of each command.
CREATE VIEW twinflow.commands_latest AS
SELECT DISTINCT ON (command_id) *
FROM twinflow.command_history
ORDER BY command_id, step DESC, status_at DESC NULLS LAST, recorded_at DESC;
