"""Playbooks, manual runs, breakers and config reload (all behind the API token)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from receiver.api.auth import requires
from receiver.api.common import json_body, parse_model, services
from receiver.api.operations import operation
from receiver.api.schemas import (
    BreakerList,
    BreakerOut,
    BreakerResetOut,
    PlaybookList,
    PlaybookOut,
    ReloadOut,
    RunQueued,
)
from receiver.domain.errors import NotFound
from receiver.engine.breaker import current_state, gauge_value
from receiver.incidents.manual import reset_breaker, start_manual_run
from receiver.store.ingest_store import fit
from receiver.store.lifecycle import RunStatus
from receiver.store.models import AuditEntry, Breaker

__all__ = ["BreakerResetBody", "ManualRunBody", "actor_with_address", "blueprint",
           "durations_as_floats"]

blueprint = Blueprint("playbooks", __name__)


class ManualRunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: dict[str, str] = Field(min_length=1, max_length=256)
    reason: str = Field(min_length=1, max_length=2000)
    actor: str | None = Field(None, min_length=1, max_length=255,
                              description="Who asks for the run (default: api).")
    # Documented as deprecated, without pydantic's `deprecated=` (it warns on every read).
    requested_by: str | None = Field(None, min_length=1, max_length=255,
                                     description="Deprecated alias of `actor`.",
                                     json_schema_extra={"deprecated": True})
    dry_run: bool = False

    @property
    def who(self) -> str:
        return self.actor or self.requested_by or "api"


class BreakerResetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)
    actor: str = Field(min_length=1, max_length=255, description="Who resets it.")


@blueprint.get("/api/v1/playbooks")
@operation("The loaded playbooks", {"200": ("playbooks", PlaybookList)})
@requires("read")
def list_playbooks() -> Response:
    config, redactor = services().config, services().redactor
    items = [PlaybookOut.of_attributes(
        playbook, matchers=[str(m) for m in playbook.matchers],
        circuit_breaker=durations_as_floats(playbook.circuit_breaker.model_dump()),
        require=[redactor.text(expr, 4096) for expr in playbook.require],
        # An http step's headers and params may carry credentials: shown redacted.
        actions=[{step.action: redactor.params(durations_as_floats(step.params))}
                 for step in playbook.actions])
        for playbook in config.playbooks().playbooks]
    current = config.current
    return jsonify(PlaybookList(items=items, version=current.version_id,
                                sha256=current.sha256, source=current.source).body())


@blueprint.post("/api/v1/playbooks/<name>/run")
@operation("Run a playbook by hand (same guards)", {"202": ("queued", RunQueued)},
           {"403": "target not allowed", "404": "unknown playbook or target",
            "409": "cooldown, breaker, paused (a dry run is not held by a pause), "
                   "host_storm or budget_exhausted; see Retry-After"},
           body=ManualRunBody, description="`requested_by` is a deprecated alias of `actor`.")
@requires("operator")
def run_playbook(name: str) -> tuple[Response, int]:
    svc = services()
    playbook = svc.config.playbooks().by_name(name)
    if playbook is None:
        raise NotFound(f"no playbook named {name!r}")
    body = parse_model(ManualRunBody, json_body(request, 1024 * 1024))
    actor = actor_with_address(body.who, request.remote_addr)
    created = start_manual_run(svc, playbook, body.labels, body.reason, actor, body.dry_run)
    return jsonify(RunQueued.of_attributes(created, status=RunStatus.QUEUED).body()), 202


def durations_as_floats(values: Any) -> Any:
    """Durations (keys ending in `_s`) as floats, so that `open_s: 60` (a default kept as
    the int it was written as) shows as 60.0 beside `window_s: 600.0`."""
    if isinstance(values, dict):
        return {key: float(value) if isinstance(key, str) and key.endswith("_s")
                and isinstance(value, int) and not isinstance(value, bool)
                else durations_as_floats(value) for key, value in values.items()}
    if isinstance(values, list):
        return [durations_as_floats(value) for value in values]
    return values


def actor_with_address(who: str, address: str | None) -> str:
    """"who (address)" in the 255 characters the audit columns hold; `who` is cut (and
    ends with an ellipsis) rather than the request refused."""
    suffix = f" ({address})"
    return fit(who, max(1, 255 - len(suffix))) + suffix


@blueprint.get("/api/v1/breakers")
@operation("Circuit breakers per target", {"200": ("breakers", BreakerList)})
@requires("read")
def list_breakers() -> Response:
    svc = services()
    now = svc.clock()
    with svc.database.session("api") as session:
        items = []
        for row in session.scalars(select(Breaker).order_by(Breaker.target)):
            state = current_state(row.state, row.open_until, now)
            items.append(BreakerOut.of_attributes(row, state=state, gauge=gauge_value(state)))
    return jsonify(BreakerList(items=items).body())


@blueprint.post("/api/v1/breakers/<path:target>/reset")
@operation("Close a breaker, recording who and why", {"200": ("reset", BreakerResetOut)},
           {"404": "no breaker for the target"}, body=BreakerResetBody)
@requires("operator")
def reset(target: str) -> Response:
    body = parse_model(BreakerResetBody, json_body(request, 64 * 1024))
    target, snapshot = reset_breaker(services(), target, body.actor, body.reason)
    return jsonify(BreakerResetOut(target=target, state=snapshot.state, actor=body.actor,
                                   reset_by=body.actor, reason=body.reason).body())


@blueprint.post("/-/reload")
@operation("Reload the playbooks file (a bad file keeps the old one)",
           {"200": ("reloaded", ReloadOut)}, {"400": "invalid playbooks file; see errors"})
@requires("operator")
def reload_config() -> Response:
    svc = services()
    loaded = svc.config.reload(actor=f"api ({request.remote_addr})")
    with svc.database.session("audit") as session:
        session.add(AuditEntry(actor=f"api ({request.remote_addr})", verb="reload",
                               subject=str(svc.config.path), reason=loaded.sha256))
    return jsonify(ReloadOut(status="reloaded", version=loaded.version_id,
                             sha256=loaded.sha256,
                             playbooks=len(loaded.playbooks.playbooks)).body())
