"""Every image docker-compose.yml needs, assembled locally (no registry), except Grafana.

    build_all(client, log=print) -> dict[service, tag]

The way target_app/build_image.py builds target_app: assemble a root filesystem from the
host's Debian binaries (the binary, the libraries `ldd` reports, data files), `docker
import` it, and, for the project's own services, `docker build` their Dockerfile FROM it.

| service          | upstream image in docker-compose.yml | local image (docker-compose.local.yml) |
|------------------|--------------------------------------|----------------------------------------|
| target_app       | built from target_app/Dockerfile     | autofix/target-app:local (same)        |
| receiver         | built from receiver/Dockerfile       | autofix/receiver:local (same)          |
| postgres         | postgres:15-bookworm                 | autofix-local/postgres:15              |
| prometheus       | prom/prometheus:v2.42.0              | autofix-local/prometheus:2.42          |
| alertmanager     | prom/alertmanager:v0.25.0            | autofix-local/alertmanager:0.25        |
| docker-proxy(-ro)| haproxy:2.6                          | autofix-local/haproxy:2.6              |
| grafana          | grafana/grafana:9.5.3                | none: not packaged by Debian           |

Each local image keeps what the compose file relies on from the upstream one: paths,
entrypoint behaviour, and user ids (postgres 999, prometheus/alertmanager nobody 65534,
receiver 10001), because the secrets' ownership is written for those ids.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

import docker
from packaging.requirements import Requirement

from target_app import build_image as tb

__all__ = ["LOCAL_TAGS", "build_all", "save_all"]

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_LIB = Path("/usr/lib/postgresql/15/lib")
PG_SHARE = Path("/usr/share/postgresql/15")
BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = ("sh", "cat", "wget", "id", "ls", "mkdir", "chmod", "rm", "mktemp", "sleep",
                   "env", "grep", "echo", "printf", "test", "[")
FORMAT = "1"   # bump to rebuild every cached local image
HASH_LABEL = "autofix.local.hash"

LOCAL_TAGS = {
    "target_app": tb.DEFAULT_TAG,
    "receiver": "autofix/receiver:local",
    "postgres": "autofix-local/postgres:15",
    "prometheus": "autofix-local/prometheus:2.42",
    "alertmanager": "autofix-local/alertmanager:0.25",
    "haproxy": "autofix-local/haproxy:2.6",
}
RECEIVER_BASE = "autofix/receiver-base:local"

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")
GROUP = "root:x:0:\nnogroup:x:65534:\n"

Log = Callable[[str], None]


def _copy_with_libs(root: Path, binaries: Iterable[Path]) -> None:
    """Copy binaries (same absolute path) and every library ldd reports for them."""
    libs: set[Path] = set()
    for binary in binaries:
        tb._copy(binary, root)
        libs |= tb._ldd(binary)
    for lib in sorted(libs):
        tb._copy(lib, root)


def _busybox(root: Path) -> None:
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for applet in BUSYBOX_APPLETS:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")


def _skeleton(root: Path, passwd: str = PASSWD, group: str = GROUP) -> None:
    for d in ("tmp", "etc", "proc", "sys", "dev", "root"):
        (root / d).mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc/passwd").write_text(passwd)
    (root / "etc/group").write_text(group)


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256(FORMAT.encode())
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        h.update(rel.encode())
        if path.is_symlink():
            h.update(str(path.readlink()).encode())
        elif path.is_file():
            st = path.stat()
            h.update(f"{st.st_size}:{int(st.st_mtime)}:{st.st_mode}".encode())
    return h.hexdigest()[:24]


def _import(client: docker.DockerClient, tag: str, root: Path, changes: list[str],
            owners: dict[str, tuple[int, int]], log: Log) -> str:
    """docker import root as tag; owners maps a path (and everything under it) to uid:gid.
    An image with the same content hash is reused."""
    wanted = _tree_hash(root) + hashlib.sha256(repr((changes, sorted(owners.items())))
                                               .encode()).hexdigest()[:8]
    try:
        if (client.images.get(tag).labels or {}).get(HASH_LABEL) == wanted:
            log(f"{tag} is current, reusing it")
            return tag
    except docker.errors.ImageNotFound:
        pass

    def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        path = "/" + info.name.lstrip("./")
        for prefix, (uid, gid) in owners.items():
            if path == prefix or path.startswith(prefix + "/"):
                info.uid, info.gid = uid, gid
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for child in sorted(root.iterdir()):
            tar.add(child, arcname=child.name, filter=owner)
    log(f"importing {len(buf.getvalue()) >> 20} MiB as {tag}")
    repo, version = tag.rsplit(":", 1)
    client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=version,
                                      changes=[f"LABEL {HASH_LABEL}={wanted}", *changes])
    return tag


def build_postgres(client: docker.DockerClient, log: Log) -> str:
    with tempfile.TemporaryDirectory(prefix="afc-pg-") as tmp:
        root = Path(tmp)
        _skeleton(root, PASSWD + "postgres:x:999:999:postgres:/var/lib/postgresql:/bin/sh\n",
                  GROUP + "postgres:x:999:\n")
        _busybox(root)
        bins = [PG_BIN / n for n in ("postgres", "initdb", "pg_ctl", "psql", "pg_isready")]
        mods = [p for p in PG_LIB.glob("*.so") if not p.name.startswith("llvmjit")]
        _copy_with_libs(root, bins + mods)
        shutil.copytree(PG_SHARE, root / str(PG_SHARE).lstrip("/"), symlinks=True)
        shutil.copytree("/usr/share/zoneinfo", root / "usr/share/zoneinfo", symlinks=True)
        for d in ("var/lib/postgresql/data", "var/run/postgresql", "docker-entrypoint-initdb.d"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "var/lib/postgresql/data").chmod(0o700)
        (root / "var/run/postgresql").chmod(0o2775)
        entry = root / "usr/local/bin/docker-entrypoint.sh"
        entry.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / "tests/harness/postgres-entrypoint.sh", entry)
        entry.chmod(0o755)
        return _import(client, LOCAL_TAGS["postgres"], root, [
            f"ENV PATH=/usr/local/bin:{PG_BIN}:/usr/bin:/bin",
            "ENV PGDATA=/var/lib/postgresql/data",
            "ENV LANG=C.UTF-8",
            'ENTRYPOINT ["docker-entrypoint.sh"]',
            'CMD ["postgres"]',
            "EXPOSE 5432",
        ], {"/var/lib/postgresql": (999, 999), "/var/run/postgresql": (999, 999)}, log)


def _go_binary_image(client: docker.DockerClient, tag: str, binary: Path, name: str,
                     workdir: str, cmd: list[str], log: Log,
                     data_dirs: tuple[str, ...] = ()) -> str:
    """prom/prometheus and prom/alertmanager: busybox, /bin/<name>, USER nobody."""
    with tempfile.TemporaryDirectory(prefix=f"afc-{name}-") as tmp:
        root = Path(tmp)
        _skeleton(root)
        _busybox(root)
        _copy_with_libs(root, [binary])
        shutil.copy2(binary, root / "bin" / name)
        for data in data_dirs:   # e.g. Debian's alertmanager looks for its templates here
            shutil.copytree(data, root / data.lstrip("/"), symlinks=True)
        (root / workdir.lstrip("/")).mkdir(parents=True)
        cmd_json = ", ".join(f'"{c}"' for c in cmd)
        return _import(client, tag, root, [
            "ENV PATH=/usr/bin:/bin",
            "USER nobody",
            f"WORKDIR {workdir}",
            f'ENTRYPOINT ["/bin/{name}"]',
            f"CMD [{cmd_json}]",
        ], {workdir: (65534, 65534)}, log)


def build_haproxy(client: docker.DockerClient, log: Log) -> str:
    """The official haproxy image (Debian based): haproxy in /usr/local/sbin, the config in
    /usr/local/etc/haproxy/haproxy.cfg, bash (the compose healthcheck uses /dev/tcp)."""
    with tempfile.TemporaryDirectory(prefix="afc-haproxy-") as tmp:
        root = Path(tmp)
        _skeleton(root)
        _busybox(root)
        _copy_with_libs(root, [Path("/usr/sbin/haproxy"), Path("/bin/bash")])
        (root / "usr/local/sbin").mkdir(parents=True)
        shutil.copy2("/usr/sbin/haproxy", root / "usr/local/sbin/haproxy")
        (root / "usr/local/etc/haproxy").mkdir(parents=True)
        return _import(client, LOCAL_TAGS["haproxy"], root, [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]',
        ], {}, log)


def _receiver_requirements() -> list[str]:
    reqs = []
    for raw in metadata.distribution("autofix").requires or []:
        req = Requirement(raw)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            reqs.append(req.name)
    return reqs


def build_receiver(client: docker.DockerClient, log: Log) -> str:
    """A base with python3.11 and the receiver's dependencies (copied from this environment,
    like target_app's base), the autofix user (10001) and an `autofix` launcher; then
    receiver/Dockerfile FROM it."""
    with tempfile.TemporaryDirectory(prefix="afc-receiver-") as tmp:
        root = Path(tmp)
        tb._assemble_rootfs(root, from_pypi=False)   # python, stdlib, flask/gunicorn/...
        site = root / tb.SITE_DIR
        for dist in tb._distribution_closure(_receiver_requirements()):
            for rel in dist.files or []:
                src = Path(dist.locate_file(rel)).resolve()
                if "__pycache__" in rel.parts or not src.is_file() or ".." in rel.parts:
                    continue
                dest = site / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
        _copy_with_libs(root, [p for p in site.rglob("*.so*") if p.is_file()])
        tb.compile_bytecode(root)
        (root / "etc/passwd").write_text(PASSWD + "autofix:x:10001:10001::/app:/bin/sh\n")
        (root / "etc/group").write_text(GROUP + "autofix:x:10001:\n")
        launcher = root / "usr/local/bin/autofix"
        launcher.parent.mkdir(parents=True, exist_ok=True)
        launcher.write_text("#!/usr/bin/python3\nimport sys\nfrom receiver.ops.cli import main\n"
                            "sys.exit(main())\n")
        launcher.chmod(0o755)
        _import(client, RECEIVER_BASE, root, [
            "ENV PATH=/usr/local/bin:/usr/bin:/bin", "ENV LANG=C.UTF-8", 'CMD ["python3"]',
        ], {}, log)
    tag = LOCAL_TAGS["receiver"]
    log(f"building {tag} FROM {RECEIVER_BASE}")
    try:
        client.images.build(path=str(REPO), dockerfile="receiver/Dockerfile", tag=tag,
                            buildargs={"BASE": RECEIVER_BASE}, pull=False, rm=True,
                            forcerm=True, network_mode="none")
    except docker.errors.BuildError as exc:
        logs = "".join(str(chunk.get("stream", chunk)) for chunk in exc.build_log)
        raise tb.BuildError(f"receiver build failed: {exc}\n{logs}") from None
    return tag


def build_all(client: docker.DockerClient, log: Log = print) -> dict[str, str]:
    missing = [str(p) for p in (PG_BIN / "postgres", BUSYBOX, Path("/usr/sbin/haproxy"),
                                Path("/usr/bin/prometheus"),
                                Path("/usr/bin/prometheus-alertmanager")) if not p.exists()]
    if missing:
        raise tb.BuildError(f"missing {', '.join(missing)}: run `bash .ci/install-os-packages`")
    tags = {
        "postgres": build_postgres(client, log),
        "prometheus": _go_binary_image(
            client, LOCAL_TAGS["prometheus"], Path("/usr/bin/prometheus"), "prometheus",
            "/prometheus", ["--config.file=/etc/prometheus/prometheus.yml",
                            "--storage.tsdb.path=/prometheus"], log),
        "alertmanager": _go_binary_image(
            client, LOCAL_TAGS["alertmanager"], Path("/usr/bin/prometheus-alertmanager"),
            "alertmanager", "/alertmanager",
            ["--config.file=/etc/alertmanager/alertmanager.yml",
             "--storage.path=/alertmanager"], log,
            data_dirs=("/usr/share/prometheus/alertmanager",)),
        "haproxy": build_haproxy(client, log),
        "receiver": build_receiver(client, log),
    }
    log(f"building {tb.DEFAULT_TAG}")
    tags["target_app"] = _build_target_app(client, log)
    return tags


def save_all(docker_host: str, path: Path) -> Path:
    """`docker save` of what build_all made, the python base the compose harness' probe
    containers run included: what `--images` of compose_stack/swarm_stack loads."""
    tags = [*LOCAL_TAGS.values(), tb.BASE_TAG]
    subprocess.run(["docker", "-H", docker_host, "save", "-o", str(path), *tags], check=True,
                   capture_output=True, timeout=600)
    return path


def _build_target_app(client: docker.DockerClient, log: Log) -> str:
    base = tb.ensure_base_image(client, log=log)
    try:
        client.images.build(path=str(tb.APP_DIR), dockerfile="Dockerfile", tag=tb.DEFAULT_TAG,
                            buildargs={"BASE": base}, pull=False, rm=True, forcerm=True,
                            network_mode="none")
    except docker.errors.BuildError as exc:
        logs = "".join(str(chunk.get("stream", chunk)) for chunk in exc.build_log)
        raise tb.BuildError(f"target_app build failed: {exc}\n{logs}") from None
    return tb.DEFAULT_TAG


if __name__ == "__main__":  # pragma: no cover - manual use: python -m tests.harness.local_images
    import os
    import sys
    c = docker.DockerClient(base_url=os.environ.get("DOCKER_HOST", sys.argv[1]), timeout=600)
    print(build_all(c))
