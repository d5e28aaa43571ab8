"""Fleet: the Docker host (AUTOFIX_DOCKER_HOSTS name) a run and an action were about, when
several hosts are configured (NULL with the one host `local`, and for what is not a
container). The key `runs.target` / `actions.target` is then `<host>/<name>`; this column
lets SQL and the dashboards group by host without parsing it.

Revision ID: 0016
Revises: 0015

"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("runs", "actions"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("docker_host", sa.String(length=63), nullable=True))


def downgrade() -> None:
    for table in ("actions", "runs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("docker_host")
