"""Busybox target containers on the private dockerd: start one (labelled for autofix or not)
and read when it last started, to tell whether a restart happened."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.harness.busybox import FAST_STOP, ensure_busybox_image


def run_container(client: Any, labelled: bool = True, command: list[str] | None = None,
                  **kwargs: Any) -> Any:
    ensure_busybox_image(client)  # never let `run` fall back to a registry pull
    name = f"t-{uuid.uuid4().hex[:8]}"
    labels = {"autofix.enable": "true"} if labelled else {}
    container = client.containers.run("autofix/busybox:test", command or FAST_STOP, name=name,
                                      network_mode="host", detach=True, labels=labels, **kwargs)
    for _ in range(50):
        container.reload()
        if container.status == "running":
            break
        time.sleep(0.1)
    return container


def started_at(container: Any) -> str:
    container.reload()
    return str(container.attrs["State"]["StartedAt"])
