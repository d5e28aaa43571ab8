"""Alertmanager webhook payload, version 4 (notify/webhook/webhook.go)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["AlertPayload", "WebhookPayload"]

# Alertmanager sends the zero time for endsAt while an alert fires.
ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
MAX_LABELS = 256


class _Lenient(BaseModel):
    # Newer Alertmanagers add fields (e.g. notification_reason): accept and ignore them.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def _check_label_map(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels are accepted, got {len(value)}")
    return value


class AlertPayload(_Lenient):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    # Stored cut to 8192 characters and marked (store.ingest_store), not refused: a long
    # PromQL expression must not cost the notification its group-mates.
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=64)

    _labels = field_validator("labels", "annotations")(_check_label_map)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        # Normalised to UTC so the dedup key compares equal whatever offset was sent.
        try:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:  # e.g. year 1 with a +01:00 offset: before datetime.min in UTC
            raise ValueError("timestamp is out of range once converted to UTC") from None

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


class WebhookPayload(_Lenient):
    version: Literal["4"]
    # Group key, receiver and external URL grow with label values (group_by): they are
    # stored (receiver cut to its column), never a reason to refuse the notification.
    group_key: str = Field(alias="groupKey")
    # The column is a 32-bit integer; Alertmanager's max_alerts is far below it.
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0, le=2**31 - 1)
    status: Literal["firing", "resolved"]
    receiver: str
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")
    alerts: list[AlertPayload]
