-- CLEAN: what the least-privilege roles may do. Run by airflow-init (docker/airflow/init.py) as the
-- owner of the tables (the role the migrations ran as), after the migrations; safe to repeat.
-- {ui} is the role, {database} this database; serving has no role here.

-- Nobody else connects, and nobody but the owner creates anything.
REVOKE ALL ON DATABASE {database} FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

-- ui: reads every table, those of later migrations too.
GRANT CONNECT ON DATABASE {database} TO {ui};
GRANT USAGE ON SCHEMA public TO {ui};
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ui};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {ui};
