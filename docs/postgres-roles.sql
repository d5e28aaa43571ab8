-- Function privileges a read-only role must not have, for a server set up by hand.
-- Run as a PostgreSQL superuser, in autofix's database, when `autofix db upgrade` says a
-- superuser is needed (migration 0005 then prints the same statements, one per function):
--
--   psql -v ON_ERROR_STOP=1 -v owner=autofix -d autofix -f docs/postgres-roles.sql
--
-- `owner` is the role the receiver logs in as (the owner of its tables). The compose stack
-- runs the same at PostgreSQL's first start (grafana/postgres-init/05-autofix-owner.sh).
--   * large objects (lo_*, loread, lowrite): any role can otherwise create and fill them,
--     whatever default_transaction_read_only says;
--   * advisory locks: a reader could hold the keys the receiver claims runs with. The
--     owner gets them back.
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
