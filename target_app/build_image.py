"""Build the target_app image with no registry at all.

    python -m target_app.build_image --docker-host unix:///path/sock --tag autofix/target-app:local

1. Assemble a minimal root filesystem from the host's Debian python3.11: the interpreter,
   the shared libraries ``ldd`` reports for it and for its extension modules, the dynamic
   loader, a pruned stdlib, /bin/sh (dash), and flask/gunicorn/prometheus-client with
   their dependencies (copied from the running environment, or ``--from-pypi``).
2. ``docker import`` it as ``autofix/python-base:local``, labelled with a content hash;
   an existing base with the same hash is reused, so reruns skip this step.
3. ``docker build`` target_app/Dockerfile with ``--build-arg BASE=autofix/python-base:local``.
   The legacy builder of dockerd 20.10 uses a local FROM image without pulling.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import docker
from packaging.requirements import Requirement

__all__ = ["BASE_TAG", "DEFAULT_TAG", "BuildError", "build", "ensure_base_image"]

HOST_PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
BASE_TAG = "autofix/python-base:local"
DEFAULT_TAG = "autofix/target-app:local"
HASH_LABEL = "autofix.base.hash"
# Bump when the layout of the base changes, so cached bases are rebuilt.
BASE_FORMAT = "2"
SITE_DIR = "usr/local/lib/python3.11/dist-packages"  # on Debian python3.11's sys.path
APP_DIR = Path(__file__).resolve().parent
ROOT_REQUIREMENTS = ("flask", "gunicorn", "prometheus-client")
# Stdlib parts nobody in the image imports; pruning them keeps the base ~40 MB smaller.
PRUNE_DIRS = {"test", "idlelib", "tkinter", "turtledemo", "__pycache__", "lib2to3",
              "ensurepip", "pydoc_data", "unittest/test", "config-3.11-x86_64-linux-gnu"}
LDD_LINE = re.compile(r"=>\s+(/\S+)|^\s*(/\S+)\s+\(")


class BuildError(RuntimeError):
    """The image cannot be built on this host; the message says what to install or fix."""


def _ldd(path: Path) -> set[Path]:
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False).stdout
    libs = set()
    for line in out.splitlines():
        m = LDD_LINE.search(line)
        if m:
            libs.add(Path(m.group(1) or m.group(2)))
    return libs


def _copy(src: Path, root: Path) -> None:
    """Copy src into root at the same absolute path, following symlinks for the content."""
    dest = root / str(src).lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        shutil.copy2(src.resolve(), dest)


def _distribution_closure(names: Iterable[str]) -> list[metadata.Distribution]:
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        dist = metadata.distribution(name)
        seen[key] = dist
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(seen.values(), key=lambda d: d.metadata["Name"].lower())


def _copy_site_packages(site: Path, from_pypi: bool) -> list[str]:
    """Put the runtime deps into site; return their pinned names (part of the hash)."""
    dists = _distribution_closure(ROOT_REQUIREMENTS)
    pins = [f"{d.metadata['Name']}=={d.version}" for d in dists]
    if from_pypi:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
                        "--target", str(site), *pins], check=True)
        return pins
    for dist in dists:
        for rel in dist.files or []:
            src = Path(dist.locate_file(rel)).resolve()
            if "__pycache__" in rel.parts or not src.is_file() or ".." in rel.parts:
                continue  # skip caches and console scripts that live outside site-packages
            dest = site / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    return pins


def _assemble_rootfs(root: Path, from_pypi: bool) -> list[str]:
    if not HOST_PYTHON.exists() or not STDLIB.is_dir():
        raise BuildError(f"{HOST_PYTHON} (Debian's python3.11) is needed to build the offline "
                         "base image: apt-get install python3")
    sh = Path("/bin/sh").resolve()  # dash on Debian
    binaries = [HOST_PYTHON, sh]
    dynload = STDLIB / "lib-dynload"
    binaries += sorted(dynload.glob("*.so"))
    libs: set[Path] = set()
    for binary in binaries:
        libs |= _ldd(binary)
    for lib in sorted(libs):
        _copy(lib, root)
    _copy(HOST_PYTHON, root)
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy2(sh, root / "bin/sh")
    shutil.copytree(STDLIB, root / "usr/lib/python3.11", symlinks=False,
                    ignore=_prune_stdlib)
    for name in ("python3", "python"):
        (root / "usr/bin" / name).symlink_to("python3.11")
    for d in ("tmp", "etc", "proc", "sys", "dev", "app"):
        (root / d).mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                     "nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    site = root / SITE_DIR
    site.mkdir(parents=True)
    pins = _copy_site_packages(site, from_pypi)
    compile_bytecode(root)
    return pins


def compile_bytecode(root: Path) -> None:
    """Ship .pyc files: without them every `python3 -m …` health check recompiles the
    modules it imports (seconds on a loaded host, past a 3 s check timeout)."""
    subprocess.run([str(HOST_PYTHON), "-m", "compileall", "-q", "-j", "0", "-s", str(root),
                    "-p", "/", str(root / "usr/lib/python3.11"), str(root / SITE_DIR)],
                   check=False, capture_output=True)


def _prune_stdlib(directory: str, names: list[str]) -> set[str]:
    rel = os.path.relpath(directory, STDLIB)
    drop = set()
    for name in names:
        path = name if rel == "." else f"{rel}/{name}"
        if name in PRUNE_DIRS or path in PRUNE_DIRS or name.endswith(".pyc"):
            drop.add(name)
    return drop


def base_hash(pins: list[str]) -> str:
    h = hashlib.sha256(BASE_FORMAT.encode())
    h.update(hashlib.sha256(HOST_PYTHON.read_bytes()).digest())
    h.update("\n".join(pins).encode())
    return h.hexdigest()[:24]


def _current_pins() -> list[str]:
    return [f"{d.metadata['Name']}=={d.version}" for d in _distribution_closure(ROOT_REQUIREMENTS)]


def ensure_base_image(client: docker.DockerClient, from_pypi: bool = False,
                      log=print) -> str:  # type: ignore[no-untyped-def]
    """Import the base image unless one with the same content hash already exists."""
    if not HOST_PYTHON.exists():
        raise BuildError(f"{HOST_PYTHON} is missing: apt-get install python3")
    wanted = base_hash(_current_pins())
    try:
        existing = client.images.get(BASE_TAG)
        if (existing.labels or {}).get(HASH_LABEL) == wanted:
            log(f"base {BASE_TAG} is current ({wanted}), reusing it")
            return BASE_TAG
    except docker.errors.ImageNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="autofix-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        root.mkdir()
        log(f"assembling root filesystem in {root}")
        _assemble_rootfs(root, from_pypi)
        tar_path = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            for child in sorted(root.iterdir()):
                tar.add(child, arcname=child.name)
        log(f"importing {tar_path.stat().st_size // (1 << 20)} MiB as {BASE_TAG}")
        repo, tag = BASE_TAG.rsplit(":", 1)
        changes = [
            f"LABEL {HASH_LABEL}={wanted}",
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
        ]
        # The SDK's import_image sends the tar as the request body (no registry involved).
        client.api.import_image_from_file(str(tar_path), repository=repo, tag=tag,
                                          changes=changes)
    return BASE_TAG


def build(docker_host: str, tag: str = DEFAULT_TAG, from_pypi: bool = False,
          log=print) -> str:  # type: ignore[no-untyped-def]
    client = docker.DockerClient(base_url=docker_host, timeout=300)
    try:
        base = ensure_base_image(client, from_pypi=from_pypi, log=log)
        log(f"building {tag} FROM {base}")
        try:
            client.images.build(path=str(APP_DIR), dockerfile="Dockerfile", tag=tag,
                                buildargs={"BASE": base}, pull=False, rm=True, forcerm=True,
                                # a daemon run with --bridge=none has no default network
                                network_mode="host")
        except docker.errors.BuildError as exc:
            logs = "".join(str(chunk.get("stream", chunk)) for chunk in exc.build_log)
            raise BuildError(f"docker build failed: {exc}\n{logs}") from None
        return tag
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docker-host", default=os.environ.get("DOCKER_HOST",
                                                                "unix:///var/run/docker.sock"))
    parser.add_argument("--tag", default=DEFAULT_TAG)
    parser.add_argument("--from-pypi", action="store_true",
                        help="pip install the deps instead of copying them from this environment")
    args = parser.parse_args(argv)
    try:
        build(args.docker_host, args.tag, from_pypi=args.from_pypi)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
