"""Thin senders: post one built message, and say whether a failure is worth retrying.

No retries in here (the SDK's own retry handlers are switched off): the outbox does them,
with backoff and Retry-After, so a slow or down Slack never holds a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from receiver.config.settings import SECRET_FIELDS, Settings
from receiver.notify.events import Event
from receiver.notify.groups import GroupInfo, build_group_slack, build_group_webhook
from receiver.notify.messages import (
    IncidentInfo,
    LinkSettings,
    build_notice_slack,
    build_notice_webhook,
    build_slack_message,
    build_webhook_payload,
)

__all__ = [
    "Channel", "Delivery", "OutboundWebhookChannel", "SendFailed", "SlackBotChannel",
    "SlackWebhookChannel", "build_channels", "channel_names", "redact", "secret_fragments",
]

# The SDK logs request headers (the bot token) at DEBUG and every failure at ERROR; we log
# each attempt ourselves, with the incident, so its own logger stays quiet.
_sdk_log = logging.getLogger("autofix.notify.sdk")
_sdk_log.setLevel(logging.CRITICAL)

# Slack Web API errors (HTTP 200, ok=false) that are Slack's trouble, not ours.
_SLACK_TRANSIENT = frozenset({"ratelimited", "internal_error", "fatal_error",
                              "service_unavailable", "request_timeout"})
_USER_AGENT = "autofix/0.1"


@dataclass(frozen=True)
class Delivery:
    """A successful send; `ts` is the Slack message id when the channel returns one."""

    ts: str | None = None


class SendFailed(Exception):
    """A send did not succeed; `retryable` says whether another attempt may."""

    def __init__(self, message: str, *, retryable: bool,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class Channel(Protocol):
    name: str
    threaded: bool  # replies go into one thread per incident

    def send(self, event: Event, incident: IncidentInfo, *, thread_ts: str | None,
             delivery_id: int) -> Delivery: ...

    def send_group(self, group: GroupInfo, *, update_ts: str | None,
                   delivery_id: int) -> Delivery: ...

    def send_notice(self, event: Event, *, delivery_id: int) -> Delivery: ...


def retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), any header case."""
    if not headers:
        return None
    value = None
    for key, item in dict(headers).items():
        if str(key).lower() == "retry-after":
            value = item[0] if isinstance(item, list | tuple) and item else item
            break
    if value is None:
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _http_failure(status: int, what: str, headers: Any) -> SendFailed:
    """429, 408 and 5xx are retried (429 after Retry-After); other statuses are final."""
    if status == 429:
        return SendFailed(f"{what}: HTTP 429 rate limited", retryable=True,
                          retry_after_s=retry_after(headers))
    retryable = status >= 500 or status == 408
    return SendFailed(f"{what}: HTTP {status}", retryable=retryable)


class SlackBotChannel:
    """chat.postMessage with a bot token: one thread per incident."""

    name = "slack"
    threaded = True

    def __init__(self, token: str, channel: str, api_url: str, timeout_s: float,
                 links: LinkSettings) -> None:
        self._client = WebClient(token=token, base_url=api_url, timeout=max(1, round(timeout_s)),
                                 logger=_sdk_log, retry_handlers=[])
        self._channel = channel
        self._links = links

    def send(self, event: Event, incident: IncidentInfo, *, thread_ts: str | None,
             delivery_id: int) -> Delivery:
        message = build_slack_message(event, incident, links=self._links)
        return self._api("chat.postMessage", lambda: self._client.chat_postMessage(
            channel=self._channel, text=message["text"], blocks=message["blocks"],
            thread_ts=thread_ts, unfurl_links=False, unfurl_media=False))

    def send_group(self, group: GroupInfo, *, update_ts: str | None,
                   delivery_id: int) -> Delivery:
        """The group's one message: posted once, then updated in place."""
        message = build_group_slack(group, self._links)
        if update_ts is not None:
            try:
                return self._api("chat.update", lambda: self._client.chat_update(
                    channel=self._channel, ts=update_ts, text=message["text"],
                    blocks=message["blocks"]))
            except SendFailed as exc:
                if "message_not_found" not in str(exc):
                    raise  # otherwise it was deleted by hand: post a new one
        return self._api("chat.postMessage", lambda: self._client.chat_postMessage(
            channel=self._channel, text=message["text"], blocks=message["blocks"],
            unfurl_links=False, unfurl_media=False))

    def send_notice(self, event: Event, *, delivery_id: int) -> Delivery:
        message = build_notice_slack(event)
        return self._api("chat.postMessage", lambda: self._client.chat_postMessage(
            channel=self._channel, text=message["text"], blocks=message["blocks"],
            unfurl_links=False, unfurl_media=False))

    def _api(self, what: str, call: Callable[[], Any]) -> Delivery:
        try:
            response = call()
        except SlackApiError as exc:
            status = int(exc.response.status_code)
            error = str(exc.response.get("error", "")) if isinstance(exc.response.data, dict) \
                else ""
            if status != 200:
                failure = _http_failure(status, what, exc.response.headers)
                raise SendFailed(f"{failure} {error}".strip(), retryable=failure.retryable,
                                 retry_after_s=failure.retry_after_s) from exc
            raise SendFailed(f"{what}: {error or 'not ok'}",
                             retryable=error in _SLACK_TRANSIENT,
                             retry_after_s=retry_after(exc.response.headers)) from exc
        except OSError as exc:  # URLError, timeouts, refused connections
            raise SendFailed(f"{what}: {type(exc).__name__}: {exc}", retryable=True) from exc
        ts = response.get("ts")
        return Delivery(ts=str(ts) if ts else None)


class SlackWebhookChannel:
    """A Slack incoming webhook: no message ids come back, so no threads."""

    name = "slack_webhook"
    threaded = False

    def __init__(self, url: str, timeout_s: float, links: LinkSettings) -> None:
        self._client = WebhookClient(url, timeout=max(1, round(timeout_s)), logger=_sdk_log,
                                     retry_handlers=[])
        self._links = links

    def send(self, event: Event, incident: IncidentInfo, *, thread_ts: str | None,
             delivery_id: int) -> Delivery:
        return self._post(build_slack_message(event, incident, links=self._links))

    def send_group(self, group: GroupInfo, *, update_ts: str | None,
                   delivery_id: int) -> Delivery:
        return self._post(build_group_slack(group, self._links))  # no update: a new post

    def send_notice(self, event: Event, *, delivery_id: int) -> Delivery:
        return self._post(build_notice_slack(event))

    def _post(self, message: dict[str, Any]) -> Delivery:
        try:
            response = self._client.send_dict(message)
        except OSError as exc:
            raise SendFailed(f"slack webhook: {type(exc).__name__}: {exc}",
                             retryable=True) from exc
        if response.status_code != 200:
            raise _http_failure(response.status_code, "slack webhook", response.headers)
        return Delivery()


class OutboundWebhookChannel:
    """The generic JSON webhook: one POST per event, `Idempotency-Key` per outbox row."""

    name = "webhook"
    threaded = False

    def __init__(self, url: str, timeout_s: float, links: LinkSettings) -> None:
        self._url = url
        self._timeout = timeout_s
        self._links = links
        self._session = requests.Session()

    def send(self, event: Event, incident: IncidentInfo, *, thread_ts: str | None,
             delivery_id: int) -> Delivery:
        return self._post(build_webhook_payload(event, incident, links=self._links),
                          delivery_id)

    def send_group(self, group: GroupInfo, *, update_ts: str | None,
                   delivery_id: int) -> Delivery:
        return self._post(build_group_webhook(group, self._links), delivery_id)

    def send_notice(self, event: Event, *, delivery_id: int) -> Delivery:
        return self._post(build_notice_webhook(event), delivery_id)

    def _post(self, body: dict[str, Any], delivery_id: int) -> Delivery:
        headers = {"User-Agent": _USER_AGENT, "Idempotency-Key": f"autofix-{delivery_id}"}
        try:
            response = self._session.post(self._url, json=body, headers=headers,
                                          timeout=self._timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise SendFailed(f"webhook: {type(exc).__name__}: {exc}", retryable=True) from exc
        if not 200 <= response.status_code < 300:
            raise _http_failure(response.status_code, "webhook", response.headers)
        return Delivery()


def channel_names(settings: Settings) -> list[str]:
    names = []
    if settings.secret("slack_bot_token") and settings.slack_channel:
        names.append(SlackBotChannel.name)
    if settings.secret("slack_webhook_url"):
        names.append(SlackWebhookChannel.name)
    if settings.secret("outbound_webhook_url"):
        names.append(OutboundWebhookChannel.name)
    return names


def build_channels(settings: Settings) -> dict[str, Channel]:
    links = LinkSettings.from_settings(settings)
    timeout = settings.notify_timeout_s
    channels: dict[str, Channel] = {}
    token, slack_channel = settings.secret("slack_bot_token"), settings.slack_channel
    if token and slack_channel:
        channels[SlackBotChannel.name] = SlackBotChannel(token, slack_channel,
                                                         settings.slack_api_url, timeout, links)
    if url := settings.secret("slack_webhook_url"):
        channels[SlackWebhookChannel.name] = SlackWebhookChannel(url, timeout, links)
    if url := settings.secret("outbound_webhook_url"):
        channels[OutboundWebhookChannel.name] = OutboundWebhookChannel(url, timeout, links)
    return channels


def secret_fragments(settings: Settings) -> list[str]:
    """Every secret, and the parts of secret URLs that errors quote (path, query, password)."""
    fragments: set[str] = set()
    for name in SECRET_FIELDS:
        value = settings.secret(name)
        if not value:
            continue
        fragments.add(value)
        if "://" in value:
            parts = urlsplit(value)
            fragments.update({parts.path, parts.query, parts.password or ""})
    return sorted((f for f in fragments if len(f) >= 8), key=len, reverse=True)


def redact(text: str, fragments: list[str]) -> str:
    for fragment in fragments:
        text = text.replace(fragment, "[redacted]")
    return text
