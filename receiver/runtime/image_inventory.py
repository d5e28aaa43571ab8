"""The image history's sources in a worker's background life: the inventory (a periodic
job: ONE container list call per backend, recording the containers not yet known) and the
events follower's `create`/`start`/`rename` events (one inspect per container not yet
known). Both move a known container's row to the name it is seen under now (Compose v2
renames a recreated container after creating it), but for a name autofix gave a container
it set aside: that one keeps its place in its name's history."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from receiver.domain.images import ContainerImage
from receiver.domain.set_aside import is_set_aside
from receiver.executor import Executor, ExecutorError, ImageSource
from receiver.store import image_history
from receiver.store.engine import Database

__all__ = ["record_container", "take_inventory"]

log = logging.getLogger("autofix.images")


def take_inventory(database: Database, executors: list[Executor], opt_in_label: str,
                   now: Callable[[], datetime]) -> int:
    """Record every opted-in container of every backend not yet in the history; how many
    were new. No per-container call: the list holds each one's image ID and creation."""
    seen: list[ContainerImage] = []
    failed: list[ExecutorError] = []
    sources = [executor for executor in executors if isinstance(executor, ImageSource)]
    # Every host listed at once: a hung one costs the job its own timeout, not the sum.
    with ThreadPoolExecutor(max(1, len(sources)), "autofix-inventory") as pool:
        calls = [pool.submit(executor.inventory) for executor in sources]
    for call in calls:
        try:
            listed = call.result()
        except ExecutorError as exc:  # one host down: the others' containers still count
            log.warning("image inventory failed", extra={"error": str(exc)})
            failed.append(exc)
            continue
        seen += [image for image in listed if _opted_in(image, opt_in_label)]
    if failed and len(failed) == len(sources):
        raise failed[0]  # nothing answered: the job failed
    if not seen:
        return 0
    with database.session("image_inventory") as session:
        known = image_history.known_names(session, (image.container_id for image in seen))
        added = image_history.record(
            session, [image for image in seen if image.container_id not in known], now())
        renamed = sum(image_history.rename(session, image.container_id, image.name)
                      for image in seen if image.container_id in known
                      and known[image.container_id] != image.name and _follows(image.name))
    if added or renamed:
        log.info("image history recorded", extra={"containers": added, "renamed": renamed,
                                                    "source": "inventory"})
    return added


def record_container(database: Database, executor: Executor, container_id: str,
                     now: datetime, name: str = "") -> bool:
    """A container the events follower saw created, started or renamed (to `name`): one
    inspect, unless known; a known one's row follows `name`."""
    if not isinstance(executor, ImageSource):
        return False
    with database.session("image_history") as session:
        if image_history.known_ids(session, [container_id]):
            if name and _follows(name):
                image_history.rename(session, container_id, name)
            return False
    image = executor.container_image(container_id)
    if image is None:
        return False
    with database.session("image_history") as session:
        return image_history.record(session, [image], now) == 1


def _opted_in(image: ContainerImage, label: str) -> bool:
    return image.labels.get(label, "").lower() == "true"


def _follows(name: str) -> bool:
    return not is_set_aside(name)
