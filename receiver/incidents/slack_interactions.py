"""Approve/Deny clicks from Slack (POST /slack/interactions).

Every request is verified before anything else. Its headers first, before a byte of its
body is read (`check_headers`; the serve worker does it in its event loop, api/gate.py):
the signing secret is set, the signature headers are there, the timestamp is within 5
minutes, the Content-Length is within 64 KiB. Then, right after the body is read, slack-sdk's
SignatureVerifier over the raw body with AUTOFIX_SLACK_SIGNING_SECRET. A request's
signature is stored once it verified, so the same request sent again is refused (the
database is shared by every worker and replica). Only Slack users in
AUTOFIX_SLACK_APPROVERS may decide; the decision is the API's (approvals.decide_run), with
the Slack user as the actor.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.exc import IntegrityError

from receiver.config.settings import Settings
from receiver.domain.errors import BadRequest, Forbidden, PayloadTooLarge, Unauthorized
from receiver.engine.services import Services
from receiver.incidents.approvals import Verdict, decide_run
from receiver.notify.messages import APPROVE_ACTION, DENY_ACTION
from receiver.store.models import SlackRequest

__all__ = ["MAX_BODY_BYTES", "SlackDecision", "check_headers", "handle_interaction",
           "parse_interaction"]

log = logging.getLogger("autofix.slack")
_VERDICTS: dict[str, Verdict] = {APPROVE_ACTION: "approve", DENY_ACTION: "deny"}
# A click's form body is a few KiB; Slack documents no larger interaction payload.
MAX_BODY_BYTES = 64 * 1024
_FRESH_S = 5 * 60  # slack-sdk's SignatureVerifier window, checked here before the body
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class _User(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=64)
    username: str = Field("", max_length=255)


class _Action(BaseModel):
    model_config = ConfigDict(extra="ignore")
    action_id: str = Field(max_length=255)
    value: str = Field("", max_length=64)


class _Interaction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    user: _User
    actions: list[_Action] = Field(min_length=1)


@dataclass(frozen=True)
class SlackDecision:
    user_id: str
    user_name: str
    verdict: Verdict
    run_id: int


def parse_interaction(body: bytes) -> SlackDecision:
    """The form-encoded `payload=<json>` of a block_actions click; 400 for anything else."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload: Any = json.loads(form["payload"][0])
        interaction = _Interaction.model_validate(payload)
    except (UnicodeDecodeError, ValueError, KeyError, ValidationError) as exc:
        raise BadRequest("not a Slack interaction payload") from exc
    action = interaction.actions[0]
    verdict = _VERDICTS.get(action.action_id)
    if interaction.type != "block_actions" or verdict is None:
        raise BadRequest(f"not an autofix approval click: {action.action_id[:80]!r}")
    if not action.value.isdigit() or not 1 <= int(action.value) <= 2**63 - 1:
        raise BadRequest("the button's value is not a run id")
    return SlackDecision(interaction.user.id, interaction.user.username, verdict,
                         int(action.value))


def check_headers(settings: Settings, timestamp: str | None, signature: str | None,
                  content_length: int | None, now: float | None = None) -> None:
    """Refuse what the headers alone show is not a fresh, signed, small Slack request."""
    if settings.secret("slack_signing_secret") is None:
        raise Unauthorized("Slack interactions are off (AUTOFIX_SLACK_SIGNING_SECRET unset)")
    if timestamp is None or signature is None or not _TIMESTAMP.fullmatch(timestamp):
        raise Unauthorized("missing Slack signature headers")
    if abs((time.time() if now is None else now) - int(timestamp)) > _FRESH_S:
        raise Unauthorized("the Slack request timestamp is outside 5 minutes", reason="stale")
    if content_length is not None and content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body of {content_length} bytes is over the limit of "
                              f"{MAX_BODY_BYTES}")


def _verify(services: Services, body: bytes, timestamp: str | None,
            signature: str | None) -> str:
    secret = services.settings.secret("slack_signing_secret")
    if secret is None:
        raise Unauthorized("Slack interactions are off (AUTOFIX_SLACK_SIGNING_SECRET unset)")
    if timestamp is None or signature is None or not timestamp.isdigit():
        raise Unauthorized("missing Slack signature headers")
    try:
        valid = SignatureVerifier(secret).is_valid(body, timestamp, signature)
    except (ValueError, UnicodeDecodeError):
        valid = False
    if not valid:
        raise Unauthorized("bad Slack signature, or a timestamp outside 5 minutes")
    return signature


def handle_interaction(services: Services, body: bytes, timestamp: str | None,
                       signature: str | None) -> str:
    """Verify, refuse replays, check the approver, decide; the text to answer with."""
    signature = _verify(services, body, timestamp, signature)
    decision = parse_interaction(body)
    try:
        with services.database.session("slack_request") as session:
            session.add(SlackRequest(signature=signature[:128], received_at=services.clock()))
    except IntegrityError:
        raise Unauthorized("this Slack request was received already (replay)",
                           reason="replay") from None
    if decision.user_id not in services.settings.slack_approvers:
        log.warning("slack click by a user who may not approve", extra={
            "slack_user": decision.user_id, "run_id": decision.run_id})
        raise Forbidden(f"Slack user {decision.user_id} is not in AUTOFIX_SLACK_APPROVERS",
                        reason="not_an_approver")
    actor = f"slack:{decision.user_id}" + (f" ({decision.user_name})"
                                           if decision.user_name else "")
    run = decide_run(services, decision.run_id, decision.verdict, actor[:255],
                     "decided in Slack")
    return f"run {run.id} {run.decision} by <@{decision.user_id}>"
