"""The live playbooks: validated at startup, swapped atomically on reload, shared via the DB.

A reload (SIGHUP or POST /-/reload) validates the file first; a bad file keeps the old
configuration and says why. A good one is stored as a new config version, which every
gunicorn worker picks up within `refresh_s`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import select

from receiver.domain.errors import ConfigError, DatabaseUnavailable
from receiver.playbooks.config import Backends, Playbook, PlaybookFile, parse_playbooks
from receiver.store.engine import Database
from receiver.store.models import ConfigVersion

__all__ = ["ConfigStore", "LoadedConfig"]

log = logging.getLogger("autofix.config")
_VERSIONS_KEPT = 8


@dataclass(frozen=True)
class LoadedConfig:
    playbooks: PlaybookFile
    sha256: str
    source: str
    version_id: int | None


class ConfigStore:
    def __init__(self, path: Path, database: Database,
                 action_params: Mapping[str, type[BaseModel]], refresh_s: float = 2.0,
                 backends: Backends | None = None) -> None:
        self.path = path
        self._backends = backends
        self._database = database
        self._action_params = action_params
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._versions: dict[int, LoadedConfig] = {}  # parsed older versions, a few kept
        try:
            text = self._read()
            loaded = self._parse(text, str(path), None)
        except ConfigError as exc:
            # A worker restarted by SIGHUP with a bad file keeps the last good version.
            fallback = self._latest_valid()
            if fallback is None:
                raise
            log.error("playbooks file invalid, keeping version %s: %s", fallback.version_id,
                      exc.details.get("errors", exc.message),
                      extra={"config_version": fallback.version_id, "path": str(path)})
            self._current = fallback
            return
        # A good file read at (re)start is the newest config: publish it to every worker.
        version_id = None
        with contextlib.suppress(DatabaseUnavailable):
            version_id = self._store(text, "startup")
        self._current = LoadedConfig(loaded.playbooks, loaded.sha256, loaded.source, version_id)
        for warning in loaded.playbooks.skipped:
            log.warning(warning, extra={"path": str(path)})
        log.info("playbooks loaded", extra={
            "config_version": version_id, "sha256": loaded.sha256,
            "playbooks": len(loaded.playbooks.playbooks), "path": str(path)})

    def _read(self) -> str:
        try:
            return self.path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read playbooks file {self.path}: {exc}") from exc

    def _parse(self, text: str, source: str, version_id: int | None) -> LoadedConfig:
        playbooks = parse_playbooks(text, self._action_params, source=source,
                                    backends=self._backends)
        return LoadedConfig(playbooks, hashlib.sha256(text.encode()).hexdigest(), source,
                            version_id)

    @property
    def current(self) -> LoadedConfig:
        return self._current

    def playbooks(self) -> PlaybookFile:
        """The current playbooks, refreshed from the DB at most every refresh_s."""
        return self.refreshed().playbooks

    def refreshed(self) -> LoadedConfig:
        """The current configuration (playbooks and version together), refreshed from the
        DB at most every refresh_s."""
        now = time.monotonic()
        if now - self._checked_at >= self._refresh_s:
            self._checked_at = now
            with contextlib.suppress(DatabaseUnavailable):  # keep serving what we have
                self._refresh()
        return self._current

    def playbook_for(self, version_id: int | None, name: str) -> Playbook | None:
        """The playbook as it was in the version a run was planned with (the current one
        when the run has none, or that version cannot be read)."""
        if version_id is None or version_id == self._current.version_id:
            return self._current.playbooks.by_name(name)
        loaded = self._versions.get(version_id)
        if loaded is None:
            loaded = self._load_version(version_id)
        if loaded is None:
            return self.refreshed().playbooks.by_name(name)
        return loaded.playbooks.by_name(name)

    def _load_version(self, version_id: int) -> LoadedConfig | None:
        try:
            with self._database.session("config_version") as session:
                row = session.get(ConfigVersion, version_id)
                if row is None:
                    return None
                loaded = self._parse(row.content, row.source, row.id)
        except ConfigError as exc:
            log.error("config version %s is not valid here: %s", version_id, exc.details)
            return None
        with self._lock:
            if len(self._versions) >= _VERSIONS_KEPT:
                self._versions.pop(next(iter(self._versions)))
            self._versions[version_id] = loaded
        return loaded

    def _latest_valid(self) -> LoadedConfig | None:
        try:
            with self._database.session("config_load") as session:
                latest = session.scalars(
                    select(ConfigVersion).order_by(ConfigVersion.id.desc()).limit(1)).first()
                if latest is None:
                    return None
                return self._parse(latest.content, latest.source, latest.id)
        except (ConfigError, DatabaseUnavailable):
            return None

    def _refresh(self) -> None:
        with self._database.session("config_refresh") as session:
            latest = session.scalars(
                select(ConfigVersion).order_by(ConfigVersion.id.desc()).limit(1)).first()
            if latest is None or latest.sha256 == self._current.sha256:
                return
            try:
                loaded = self._parse(latest.content, latest.source, latest.id)
            except ConfigError as exc:  # e.g. written by a newer version with more actions
                log.error("config version %s is not valid here: %s", latest.id, exc.details)
                return
        with self._lock:
            self._current = loaded
        log.info("playbooks switched to version %s (%s)", loaded.version_id, loaded.sha256[:12],
                 extra={"config_version": loaded.version_id, "sha256": loaded.sha256})

    def reload(self, actor: str) -> LoadedConfig:
        """Validate the file; on success make it current everywhere. ConfigError otherwise."""
        text = self._read()
        loaded = self._parse(text, str(self.path), None)
        version_id = self._store(text, actor)
        loaded = LoadedConfig(loaded.playbooks, loaded.sha256, loaded.source, version_id)
        with self._lock:
            self._current = loaded
        log.info("playbooks reloaded", extra={
            "config_version": version_id, "sha256": loaded.sha256, "actor": actor,
            "playbooks": len(loaded.playbooks.playbooks), "path": str(self.path)})
        return loaded

    def _store(self, text: str, actor: str) -> int:
        digest = hashlib.sha256(text.encode()).hexdigest()
        with self._database.session("config_store") as session:
            latest = session.scalars(
                select(ConfigVersion).order_by(ConfigVersion.id.desc()).limit(1)).first()
            if latest is not None and latest.sha256 == digest:
                return latest.id
            row = ConfigVersion(sha256=digest, source=f"{self.path} ({actor})", content=text)
            session.add(row)
            session.flush()
            return row.id
