#!/bin/sh
# Run once by the postgres image on an EMPTY data directory (/docker-entrypoint-initdb.d):
# creates the group role autofix_grafana (migration 0003 grants it SELECT on incidents and
# actions) and the LOGIN user Grafana's datasource connects as, with the password from the
# grafana_db_password secret. Either order works: the migration finds the role here, or
# creates it itself. For an existing data directory run the same SQL by hand
# (docs/dashboards.md). Environment: POSTGRES_USER, POSTGRES_DB (the image sets them);
# GRAFANA_DB_USER (default grafana_reader); GRAFANA_DB_PASSWORD_FILE (default
# /run/secrets/grafana_db_password).
set -eu
user="${GRAFANA_DB_USER:-grafana_reader}"
password_file="${GRAFANA_DB_PASSWORD_FILE:-/run/secrets/grafana_db_password}"
if [ ! -s "$password_file" ]; then
    echo "10-grafana-reader.sh: $password_file is missing or empty; no Grafana login created" >&2
    exit 1
fi
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v user="$user" -v password="$(cat "$password_file")" <<'SQL'
DO $$ BEGIN
    CREATE ROLE autofix_grafana NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
CREATE ROLE :"user" LOGIN PASSWORD :'password' IN ROLE autofix_grafana;
-- Belt and braces: even a mistaken GRANT cannot make a Grafana query write.
ALTER ROLE :"user" SET default_transaction_read_only = on;
ALTER ROLE :"user" SET statement_timeout = '30s';
SQL
