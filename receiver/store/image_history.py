"""The image history in the database: each container once (insert-if-absent, so every
worker process may record the same container), and its predecessor under the same name.
A container's name follows it (`rename`): Compose v2 creates a recreated container under
a temporary `<old id[:12]>_<name>` and renames it before starting it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from receiver.domain.images import ContainerImage
from receiver.store.lifecycle import rows_changed
from receiver.store.models import ImageHistory

__all__ = ["KEEP_PER_NAME", "find", "known_ids", "known_names", "predecessor", "prunable",
           "ran_before", "record", "rename"]

# Retention never prunes the newest three of a name: the predecessor, and the row before
# it that tells a return to an earlier image (a rollback's) from a new one.
KEEP_PER_NAME = 3


def record(session: Session, images: Iterable[ContainerImage], now: datetime) -> int:
    """Insert each container not recorded yet; how many were new."""
    dialect = session.get_bind().dialect.name
    inserted = 0
    for image in images:
        if not image.container_id or not image.image_id:
            continue
        values: dict[str, Any] = dict(
            name=image.name[:255], container_id=image.container_id[:64],
            image_id=image.image_id[:128], image_ref=image.image_ref[:512],
            created_at=image.created_at, first_seen_at=now)
        if dialect == "postgresql":
            statement: Any = postgresql.insert(ImageHistory).on_conflict_do_nothing(
                index_elements=["container_id"])
        elif dialect == "sqlite":
            statement = sqlite.insert(ImageHistory).on_conflict_do_nothing(
                index_elements=["container_id"])
        else:  # pragma: no cover - only the two supported backends
            statement = insert(ImageHistory)
        inserted += rows_changed(session.execute(statement.values(**values)))
    return inserted


def known_ids(session: Session, container_ids: Iterable[str]) -> set[str]:
    return set(known_names(session, container_ids))


def known_names(session: Session, container_ids: Iterable[str]) -> dict[str, str]:
    """The recorded containers among `container_ids`, with the name each is recorded under."""
    wanted = list(dict.fromkeys(container_ids))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):  # bounded IN lists
        for container_id, name in session.execute(
                select(ImageHistory.container_id, ImageHistory.name).where(
                    ImageHistory.container_id.in_(wanted[start:start + 500]))).tuples():
            found[container_id] = name
    return found


def rename(session: Session, container_id: str, name: str) -> int:
    """A known container seen under another name: the history follows it (1, else 0)."""
    if not container_id or not name:
        return 0
    return rows_changed(session.execute(
        update(ImageHistory)
        .where(ImageHistory.container_id == container_id[:64],
               ImageHistory.name != name[:255])
        .values(name=name[:255])))


def find(session: Session, container_id: str) -> ContainerImage | None:
    row = session.scalars(select(ImageHistory)
                          .where(ImageHistory.container_id == container_id)).first()
    return None if row is None else _image(row)


def predecessor(session: Session, current: ContainerImage) -> ContainerImage | None:
    """The newest container recorded under `current`'s name, created before it."""
    row = session.scalars(
        select(ImageHistory)
        .where(ImageHistory.name == current.name,
               ImageHistory.container_id != current.container_id,
               ImageHistory.created_at <= current.created_at)
        .order_by(ImageHistory.created_at.desc(), ImageHistory.id.desc()).limit(1)).first()
    return None if row is None else _image(row)


def ran_before(session: Session, current: ContainerImage, previous: ContainerImage) -> bool:
    """Whether an earlier container of the name than `previous` ran `current`'s image: a
    return to it (a rollback, by autofix or a human) is no new image."""
    return session.scalars(
        select(ImageHistory.id)
        .where(ImageHistory.name == current.name, ImageHistory.image_id == current.image_id,
               ImageHistory.container_id.not_in([current.container_id,
                                                 previous.container_id]),
               ImageHistory.created_at <= previous.created_at).limit(1)).first() is not None


def prunable(cutoff: datetime, judged_since: datetime | None = None
             ) -> tuple[ColumnElement[bool], ...]:
    """The retention's conditions: first seen before `cutoff`, not among the newest
    KEEP_PER_NAME of its name, and its name has no container created since `judged_since`
    (now minus the new-image window): one that may still be judged keeps its name's whole
    history, every row `ran_before` may need."""
    ranked = select(ImageHistory.id, func.row_number().over(
        partition_by=ImageHistory.name,
        order_by=(ImageHistory.created_at.desc(), ImageHistory.id.desc())).label("rank")
    ).subquery()
    newest = select(ranked.c.id).where(ranked.c.rank <= KEEP_PER_NAME)
    conditions = (ImageHistory.first_seen_at < cutoff, ImageHistory.id.not_in(newest))
    if judged_since is None:
        return conditions
    recent = select(ImageHistory.name).where(ImageHistory.created_at >= judged_since)
    return (*conditions, ImageHistory.name.not_in(recent))


def _image(row: ImageHistory) -> ContainerImage:
    return ContainerImage(row.name, row.container_id, row.image_id, row.image_ref,
                          row.created_at)
