-- Maintenance plans (maintenance_plan.v1), written by `twinflow plan --db`: one row per plan
-- with its figures and the whole document, and one row per twin with its decision. plan_id
-- is a uuid5 of the plan's time, horizon and estimates, so a plan written twice is stored
-- once (the writer inserts with ON CONFLICT DO NOTHING).
--
-- action is the type's planned action, or run_to_failure (nothing within the horizon, at is
-- null); failure_risk is the probability that the twin fails before the action (within the
-- horizon for run_to_failure). The view maintenance_plan_latest lists the newest plan's items.

CREATE TABLE twinflow.maintenance_plans (
    plan_id uuid PRIMARY KEY,
    time timestamptz NOT NULL,
    horizon_end timestamptz NOT NULL,
    status text NOT NULL,
    expected_cost double precision NOT NULL,
    run_to_failure_cost double precision NOT NULL,
    expected_failures double precision NOT NULL,
    document jsonb NOT NULL,
    -- database time the plan was stored
    stored_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX maintenance_plans_time ON twinflow.maintenance_plans (time);

CREATE TABLE twinflow.maintenance_plan_items (
    plan_id uuid NOT NULL REFERENCES twinflow.maintenance_plans (plan_id) ON DELETE CASCADE,
    twin_id text NOT NULL,
    twin_type text NOT NULL,
    outage text NOT NULL,
    action text NOT NULL,
    at timestamptz,
    expected_cost double precision NOT NULL,
    failure_risk double precision NOT NULL,
    rul_hours double precision,
    rul_low_hours double precision,
    rul_high_hours double precision,
    CONSTRAINT maintenance_plan_items_key PRIMARY KEY (plan_id, twin_id)
);

-- The newest plan (by time, then by when it was stored): one row per twin.
CREATE VIEW twinflow.maintenance_plan_latest AS
SELECT i.*, p.time AS plan_time
FROM twinflow.maintenance_plan_items AS i
JOIN (
    SELECT plan_id, time
    FROM twinflow.maintenance_plans
    ORDER BY time DESC, stored_at DESC
    LIMIT 1
) AS p USING (plan_id);
