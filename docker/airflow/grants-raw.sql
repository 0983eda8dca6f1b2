-- RAW: what the least-privilege roles may do. Run by airflow-init (docker/airflow/init.py) as the
-- owner of the tables (the role the migrations ran as), after the migrations; safe to repeat.
-- {serving} and {ui} are the roles, {database} this database.

-- Nobody else connects, and nobody but the owner creates anything.
REVOKE ALL ON DATABASE {database} FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

-- serving: appends to the inference log (through a temporary table it copies into), nothing else.
GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {serving};
GRANT USAGE ON SCHEMA public TO {serving};
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {serving};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {serving};
GRANT INSERT ON inference_requests TO {serving};
-- Its INSERT ... ON CONFLICT (request_id, row_index) DO NOTHING (a re-sent batch is skipped) needs
-- to read the key's columns, and only those: a uuid and a row number, no inputs, no predictions.
GRANT SELECT (request_id, row_index) ON inference_requests TO {serving};
-- The same for the challenger's shadow prices (serving.shadow), written the same way.
GRANT INSERT ON shadow_predictions TO {serving};
GRANT SELECT (request_id, row_index) ON shadow_predictions TO {serving};
-- It publishes the newest live drift check (tasador monitor) in /metrics: those columns only.
GRANT SELECT (id, alarm, drift_share, rows, checked_at) ON live_drift_checks TO {serving};

-- ui: reads every table, those of later migrations too.
GRANT CONNECT ON DATABASE {database} TO {ui};
GRANT USAGE ON SCHEMA public TO {ui};
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ui};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {ui};
