"""Two versions of a tiny local app image for rollback tests (no registry): static busybox
imported twice, v2 with other Env, label, working dir, health check, an extra file
and an `env` applet v1 lacks.

    v1, v2 = build_app_images(client)  # image ids, sha256:...
"""

from __future__ import annotations

import io
import tarfile

import docker

from .procs import require_binary

__all__ = ["APP_CMD", "build_app_images"]

# Exits promptly on SIGTERM; writes which image it runs from, for the tests to read.
APP_CMD = "trap 'exit 0' TERM; cat /version > /data/seen 2>/dev/null; while :; do sleep 0.1; done"


def _rootfs(version: str, extra: bool) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "tmp", "etc", "proc", "sys", "dev", "data"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o777
            tar.addfile(info)
        with open(require_binary("busybox"), "rb") as handle:
            data = handle.read()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        # `env` only in v2: a command using it starts on v2 and fails to start on v1.
        for applet in ("sh", "sleep", "true", "false", "echo", "cat", "test",
                       *(("env",) if extra else ())):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        files = {"version": version.encode()}
        if extra:
            files["etc/only-in-v2"] = b"new\n"
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def build_app_images(client: docker.DockerClient) -> tuple[str, str]:
    """(v1 id, v2 id), tagged autofix/rollback-app:v1 and :v2."""
    ids = []
    for version, extra in (("v1", False), ("v2", True)):
        changes = ["ENV PATH=/bin", f"ENV APP_VERSION={version}",
                   f"LABEL app.version={version}", f'CMD ["sh", "-c", "{APP_CMD}"]']
        if extra:
            changes += ["ENV ONLY_V2=1", "WORKDIR /data",
                        'HEALTHCHECK --interval=5s CMD ["test", "-f", "/version"]']
        client.api.import_image_from_data(_rootfs(version, extra),
                                          repository="autofix/rollback-app", tag=version,
                                          changes=changes)
        ids.append(client.images.get(f"autofix/rollback-app:{version}").id)
    return ids[0], ids[1]
