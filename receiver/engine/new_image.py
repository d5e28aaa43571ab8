"""A bad update: the run's container was created from a new image a moment ago (a deploy,
Watchtower, `compose pull && up`). Restarting it only delays the rollback, so the
playbook's `on_new_image` decides: escalate (the default: skip `bad_update`), act as
written, or roll back (the steps become `rollback_image` to the previous image, then a
wait_healthy). The image history is in store/image_history.py."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from receiver.domain.images import ContainerImage, NewImage, new_image, short_image
from receiver.domain.set_aside import is_set_aside
from receiver.engine.guards import GuardStop, Subject
from receiver.executor import ExecutorError, ImageSource
from receiver.playbooks.config import ActionStep, Playbook
from receiver.store import image_history

if TYPE_CHECKING:
    from receiver.engine.services import Services

__all__ = ["BAD_UPDATE", "IMAGE_UNKNOWN", "ROLLBACK_ACTION", "Rollback", "detect",
           "on_new_image", "rollback_finished", "rollback_refused"]

log = logging.getLogger("autofix.new_image")
BAD_UPDATE = "bad_update"  # the skip reason and the classification
IMAGE_UNKNOWN = "image_unknown"  # the backend could not say which image: never a guess
ROLLBACK_ACTION = "rollback_image"
# What follows the rollback: the health check when the recreated container has one, else
# running this long (wait_healthy does either).
_VERIFY = ActionStep(action="wait_healthy", params={"timeout_s": 120, "running_for_s": 10})


@dataclass(frozen=True)
class Rollback:
    """The run's steps replaced: `playbook` is the run's playbook with the rollback's steps."""

    change: NewImage
    playbook: Playbook


def detect(services: Services, playbook: Playbook, subject: Subject
           ) -> NewImage | GuardStop | None:
    """Whether the subject's container was created from a new image inside the window.
    Its image comes from the history (the follower or the inventory saw it), else from one
    inspect, recorded then. A backend that cannot say stops the run (`image_unknown`,
    escalated): a restart on a guess could hide a bad update. A container gone (None) is
    no new image; the database's outage stops the run like every other stage's."""
    window = services.settings.new_image_window
    identity = subject.identity
    executor = services.executor_for(playbook, subject.fleet_host)
    if window <= 0 or identity is None or not isinstance(executor, ImageSource):
        return None
    now = services.clock()
    try:
        with services.database.session("image_history") as session:
            current = image_history.find(session, identity.id)
            if current is not None and current.name != subject.name \
                    and not is_set_aside(subject.name):  # renamed since it was recorded
                image_history.rename(session, identity.id, subject.name)
            if current is not None:  # the usual case: one transaction
                return _judged(session, _named(current, subject.key), now, window)
        current = executor.container_image(identity.id)
        if current is None:
            return None
        with services.database.session("image_history") as session:
            image_history.record(session, [current], now)
            return _judged(session, _named(current, subject.key), now, window)
    except ExecutorError as exc:
        log.warning("image not known", extra={"target": subject.name, "error": str(exc)})
        return GuardStop(IMAGE_UNKNOWN, f"could not read which image {subject.name} runs "
                         f"({exc}), so whether it is a bad update cannot be told: nothing "
                         f"touched, a human decides", escalate=True, target=subject.key)


def _judged(session: Session, current: ContainerImage, now: datetime, window: float
            ) -> NewImage | None:
    previous = image_history.predecessor(session, current)
    returned = previous is not None and image_history.ran_before(session, current, previous)
    return new_image(current, previous, now, window, returned)


def on_new_image(services: Services, playbook: Playbook, subject: Subject,
                 change: NewImage) -> GuardStop | Rollback | None:
    """The playbook's answer: a stop (escalate), the rollback's steps, or None (act)."""
    text = change.describe(services.clock())
    if playbook.on_new_image == "act":
        log.info("new image, acting as written", extra={"target": subject.name,
                                                        "detail": text})
        return None
    if playbook.on_new_image == "rollback":
        spec = services.registry.get(ROLLBACK_ACTION)
        if spec is not None and (spec.backends is None or playbook.executor in spec.backends):
            steps = [ActionStep(action=ROLLBACK_ACTION,
                                params={"image": change.previous.image_id}), _VERIFY]
            return Rollback(change, playbook.model_copy(update={"actions": steps}))
        services.metrics.rollbacks.labels("refused").inc()
        return GuardStop(BAD_UPDATE, f"{text}; {playbook.name} would roll back "
                         f"(on_new_image: rollback) but the {ROLLBACK_ACTION} action is not "
                         f"available for the {playbook.executor} backend: a human decides",
                         escalate=True, target=subject.key)
    return GuardStop(BAD_UPDATE, f"{text}; a restart would not fix a bad update, so "
                     f"{playbook.name} escalates it to a human (on_new_image: escalate)",
                     escalate=True, target=subject.key)


def rollback_refused(services: Services, change: NewImage, why: str) -> str:
    """A guard stopped the rollback run before it acted: counted, said in the escalation."""
    services.metrics.rollbacks.labels("refused").inc()
    return f"rollback of {change.current.name} refused ({why})"


def rollback_finished(services: Services, change: NewImage, succeeded: bool,
                      error: str | None, dry_run: bool) -> str:
    """Counted (a dry run is not), and what the escalation says: never silent."""
    if not dry_run:
        services.metrics.rollbacks.labels("succeeded" if succeeded else "failed").inc()
    done = ("would have rolled back (dry run)" if dry_run
            else "rolled back" if succeeded else "tried to roll back")
    text = (f"{change.describe(services.clock())}; autofix {done} {change.current.name} to "
            f"{short_image(change.previous.image_id)}"
            f"{f' ({change.previous.image_ref})' if change.previous.image_ref else ''}")
    return text if succeeded or dry_run else f"{text}, which failed: {error}"


def _named(image: ContainerImage, name: str) -> ContainerImage:
    return image if image.name == name else replace(image, name=name)
