"""A throwaway PostgreSQL cluster owned by the `postgres` OS user (initdb refuses root)."""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from .procs import LOOPBACK, free_port, require_binary, wait_for

SUPERUSER = "autofix_test"


class Postgres:
    def __init__(self, root: Path, durable: bool = False) -> None:
        self.durable = durable  # fsync and full-page writes on, as a production server runs
        self.initdb = require_binary("initdb")
        self.pg_ctl = require_binary("pg_ctl")
        self.root = root
        self.data = root / "data"
        self.sock_dir = root / "sock"
        self.port = free_port()
        self.run_as = _unprivileged_user()

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        if self.run_as is not None:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
        return done

    def init(self) -> Postgres:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sock_dir.mkdir(exist_ok=True)
        if self.run_as is not None:
            shutil.chown(self.root, self.run_as)
            shutil.chown(self.sock_dir, self.run_as)
        self._run([self.initdb, "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                   "--no-sync", "-E", "UTF8"])
        return self

    def start(self) -> Postgres:
        options = (f"-c listen_addresses={LOOPBACK} -c port={self.port} "
                   f"-c unix_socket_directories={self.sock_dir} -c max_connections=200 "
                   # fsync only guards against an OS crash; commits stay synchronous, so a
                   # killed server (the outage tests) loses nothing that was acknowledged.
                   + ("-c fsync=on -c full_page_writes=on -c synchronous_commit=on"
                      if self.durable else "-c fsync=off -c full_page_writes=off"))
        self._run([self.pg_ctl, "-D", str(self.data), "-o", options, "-l",
                   str(self.root / "postgres.log"), "-w", "-t", "60", "start"])
        wait_for(self._accepts, 30, "postgres")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"], check=False)

    def discard(self) -> None:
        """Stop the server if it still runs and delete its directory; never raises (it
        runs at exit, where an error could only print a traceback)."""
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop(mode="immediate")
        except (OSError, subprocess.SubprocessError):
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _accepts(self) -> bool:
        import psycopg2

        psycopg2.connect(self.admin_dsn("postgres"), connect_timeout=2).close()
        return True

    def admin_dsn(self, dbname: str) -> str:
        return f"host={LOOPBACK} port={self.port} user={SUPERUSER} dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg2://{SUPERUSER}@{LOOPBACK}:{self.port}/{dbname}"

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """A fresh database, empty or a copy of `template`; returns its SQLAlchemy URL."""
        import psycopg2

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        conn = psycopg2.connect(self.admin_dsn("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            if template is None:
                cur.execute(f'CREATE DATABASE "{name}"')
            else:
                cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                # The copy takes the template's schema, rows and object grants, but not what
                # the cluster keeps about it: its database-level grants (pg_database.datacl:
                # the migrations' GRANT CONNECT and REVOKE TEMPORARY) and any ALTER
                # DATABASE ... SET. Copy those as they are.
                cur.execute("UPDATE pg_database SET datacl = (SELECT datacl FROM pg_database"
                            " WHERE datname = %s) WHERE datname = %s", (template, name))
                cur.execute("INSERT INTO pg_db_role_setting SELECT new.oid, s.setrole,"
                            " s.setconfig FROM pg_db_role_setting s"
                            " JOIN pg_database tmpl ON tmpl.oid = s.setdatabase"
                            " JOIN pg_database new ON new.datname = %s"
                            " WHERE tmpl.datname = %s", (name, template))
        conn.close()
        return self.url(name)


def _unprivileged_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root needs a 'postgres' user: apt-get install postgresql")


def start_postgres(durable: bool = False, discard_at_exit: bool = True) -> Postgres:
    """`discard_at_exit=False` for a cluster that outlives this process (the demo's)."""
    # Not under pytest's tmp_path: that is private to root, and postgres runs as its own user.
    root = Path(tempfile.mkdtemp(prefix="autofix-pg-"))
    server = Postgres(root, durable)
    if discard_at_exit:
        # At exit rather than at stop(): the outage tests stop a server and start it again.
        # Only in this process: a forked child that exits normally must not take it.
        owner = os.getpid()
        atexit.register(lambda: server.discard() if os.getpid() == owner else None)
    return server.init().start()
