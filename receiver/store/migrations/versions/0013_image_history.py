"""Image history: the image each container autofix saw was created from, so that a
container recreated from a new image (a deploy, Watchtower, `compose pull && up`) is told
from one that crashed.

Revision ID: 0013
Revises: 0012

"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "image_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("container_id", sa.String(length=64), nullable=False),
        sa.Column("image_id", sa.String(length=128), nullable=False),
        sa.Column("image_ref", sa.String(length=512), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("first_seen_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("container_id"),
    )
    # The lookup: the newest earlier container under a name.
    op.create_index("ix_image_history_name_created", "image_history", ["name", "created_at"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.execute(sa.text(
            "SELECT 1 FROM pg_roles WHERE rolname = 'autofix_grafana'")).scalar():
        # The incidents dashboard shows the image changes of an incident's target.
        op.execute("GRANT SELECT ON image_history TO autofix_grafana")


def downgrade() -> None:
    op.drop_index("ix_image_history_name_created", table_name="image_history")
    op.drop_table("image_history")
