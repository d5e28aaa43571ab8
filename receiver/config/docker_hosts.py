"""AUTOFIX_DOCKER_HOSTS: the Docker hosts one receiver acts on, by name.

A JSON object, or the path of a JSON or YAML file holding one, mapping a host name to
`{url, tls: {ca, cert, key}, timeout_s}`. Validated at startup: an unknown key, a missing
TLS file or a bad name is an error naming it. AUTOFIX_DOCKER_HOST is the one-host
shorthand, host `local`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["HOST_NAME", "LOCAL_HOST", "DockerHostSpec", "DockerTls", "parse_docker_hosts"]

LOCAL_HOST = "local"
HOST_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_SCHEMES = ("unix://", "tcp://", "ssh://")


class DockerTls(BaseModel):
    """Verify the daemon against `ca` and present `cert`/`key` (DOCKER_TLS_VERIFY)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca: Path
    cert: Path
    key: Path

    @field_validator("ca", "cert", "key")
    @classmethod
    def _readable(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value


class DockerHostSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None  # None only for `local` without AUTOFIX_DOCKER_HOST: the SDK default
    tls: DockerTls | None = None
    timeout_s: float | None = Field(None, gt=0)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str:
        if value is None or not value.startswith(_SCHEMES) or len(value) <= len("tcp://"):
            raise ValueError(f"{value!r}: a Docker endpoint is unix://, tcp:// or ssh://")
        return value


def parse_docker_hosts(raw: str) -> dict[str, DockerHostSpec]:
    """The hosts in `raw` (JSON text, or a path to a JSON/YAML file); ValueError says why not."""
    text = raw.strip()
    source = "AUTOFIX_DOCKER_HOSTS"
    if not text.startswith("{"):
        path = Path(text)
        source = f"AUTOFIX_DOCKER_HOSTS file {path}"
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"AUTOFIX_DOCKER_HOSTS: not a JSON object, and cannot read "
                             f"{path}: {exc}") from None
    try:
        data: Any = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{source}: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{source}: must map host names to {{url: ...}}, at least one")
    hosts: dict[str, DockerHostSpec] = {}
    for name, spec in data.items():
        if not isinstance(name, str) or not HOST_NAME.fullmatch(name):
            raise ValueError(f"{source}: host name {name!r} must match {HOST_NAME.pattern}")
        try:
            hosts[name] = DockerHostSpec.model_validate(spec)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'host'}: "
                                 f"{error['msg']}" for error in exc.errors())
            raise ValueError(f"{source}: host {name!r}: {problems}") from None
    return hosts
