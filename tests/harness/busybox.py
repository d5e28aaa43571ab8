"""A tiny local image (static busybox) for receiver tests: no registry, imported in a second."""

from __future__ import annotations

import io
import tarfile

import docker

from .procs import require_binary

TAG = "autofix/busybox:test"
# PID 1 exits promptly on SIGTERM, so `docker restart` is fast; tests that need a slow
# restart use SLOW_STOP, which ignores SIGTERM and costs the full stop timeout.
FAST_STOP = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
SLOW_STOP = ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]


def ensure_busybox_image(client: docker.DockerClient) -> str:
    try:
        client.images.get(TAG)
        return TAG
    except docker.errors.ImageNotFound:
        pass
    busybox = require_binary("busybox")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "tmp", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        with open(busybox, "rb") as handle:
            data = handle.read()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in ("sh", "sleep", "true", "false", "echo", "cat", "kill"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    client.api.import_image_from_data(buffer.getvalue(), repository=TAG.split(":")[0],
                                      tag=TAG.split(":")[1],
                                      changes=["ENV PATH=/bin", 'CMD ["sh"]'])
    return TAG
