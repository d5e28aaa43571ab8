#!/bin/sh
# Run once by the postgres image on an EMPTY data directory (/docker-entrypoint-initdb.d),
# as the superuser, before 10-grafana-reader.sh:
#   * `autofix`, the role the receiver logs in as: LOGIN, owner of the database (so it
#     owns the schema public and every table its migrations create), and nothing more:
#     NOSUPERUSER NOCREATEDB NOCREATEROLE. Password from the autofix_db_password secret.
#   * the group role autofix_grafana (migration 0003 grants it SELECT on two tables).
#   * function privileges a read-only login must not have, revoked from PUBLIC in this
#     database: large objects (lo_*), which any role can otherwise create and fill, and
#     advisory locks, with which a reader could block the receiver's run claims. The
#     owner gets the advisory locks back. Migration 0005 checks this and prints the same
#     SQL when it lacks the rights to run it (docs/postgres-roles.sql).
# Environment: POSTGRES_USER, POSTGRES_DB (the image sets them); AUTOFIX_DB_USER (default
# autofix); AUTOFIX_DB_PASSWORD_FILE (default /run/secrets/autofix_db_password).
set -eu
owner="${AUTOFIX_DB_USER:-autofix}"
password_file="${AUTOFIX_DB_PASSWORD_FILE:-/run/secrets/autofix_db_password}"
if [ ! -s "$password_file" ]; then
    echo "05-autofix-owner.sh: $password_file is missing or empty; no autofix login created" >&2
    exit 1
fi
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner="$owner" -v password="$(cat "$password_file")" -v db="$POSTGRES_DB" <<'SQL'
CREATE ROLE :"owner" LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
ALTER DATABASE :"db" OWNER TO :"owner";
DO $$ BEGIN
    CREATE ROLE autofix_grafana NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
SELECT set_config('autofix.owner', :'owner', false);
DO $$
DECLARE fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid::regprocedure FROM pg_proc p
              WHERE p.pronamespace = 'pg_catalog'::regnamespace
                AND (p.proname LIKE 'lo\_%' OR p.proname IN ('loread', 'lowrite')
                     OR p.proname LIKE 'pg\_advisory\_%' OR p.proname LIKE 'pg\_try\_advisory\_%')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
        IF fn::text LIKE '%advisory%' THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn,
                           current_setting('autofix.owner'));
        END IF;
    END LOOP;
END $$;
SQL
