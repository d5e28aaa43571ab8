"""Replicas migrate at startup at the same moment (a Swarm service with 2 receivers): the
second `autofix db upgrade` waits for the first's lock, then finds the schema at head."""

from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa

from tests.harness.postgres import Postgres

UPGRADE = "import sys; from receiver.store.migrate import upgrade; upgrade(sys.argv[1])"
ROUNDS = 3   # the race without the lock loses in most rounds, not necessarily in every one


def test_simultaneous_upgrades_of_one_postgres_database_both_succeed(postgres: Postgres
                                                                     ) -> None:
    from alembic.script import ScriptDirectory

    from receiver.store.migrate import alembic_config

    for _ in range(ROUNDS):
        url = postgres.create_database()
        procs = [subprocess.Popen([sys.executable, "-c", UPGRADE, url], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for _ in range(2)]
        outputs = [proc.communicate(timeout=300)[0] for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0], "\n".join(outputs)[-3000:]
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        engine.dispose()
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert [v for (v,) in versions] == [head]
