"""The one Prometheus client: an instant query (`GET /api/v1/query`) with a timeout.

promql_check steps, the evidence's alert value and `require:` preconditions all ask
through `instant_query`. Every way Prometheus can fail to answer is a `PrometheusError`:
`PrometheusUnreachable` (refused, timed out, not JSON) or `PrometheusQueryError` (a non-200
or `status: error`, e.g. a PromQL syntax error), so no caller mistakes "no answer" for
"no series".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

__all__ = ["PrometheusError", "PrometheusQueryError", "PrometheusUnreachable", "QueryResult",
           "instant_query"]

_ERROR_CHARS = 500


class PrometheusError(Exception):
    """Prometheus gave no usable answer."""


class PrometheusUnreachable(PrometheusError):
    """No HTTP answer in time, or one that is not Prometheus' JSON."""


class PrometheusQueryError(PrometheusError):
    """Prometheus answered, with an error (bad PromQL, an overloaded server, a 5xx)."""


@dataclass(frozen=True)
class QueryResult:
    result_type: str  # vector, matrix, scalar or string
    series: list[dict[str, Any]]  # one {"metric", "value"} per sample; one for a scalar

    @property
    def nonempty(self) -> bool:
        """A vector or matrix with at least one series; a scalar or string always is."""
        return bool(self.series)

    def describe(self) -> str:
        """What Prometheus said, in a few words, for a run's record."""
        if not self.series:
            return f"empty {self.result_type}"
        first = self.series[0]
        value = (first.get("value") or [None, None])[1] if "value" in first else "…"
        return (f"{self.result_type} of {len(self.series)}, first "
                f"{first.get('metric', {})} = {value}")


def instant_query(prometheus_url: str, expr: str, timeout_s: float) -> QueryResult:
    """Evaluate `expr` now. Raises PrometheusError when there is no trustworthy answer."""
    url = f"{prometheus_url.rstrip('/')}/api/v1/query"
    try:
        response = requests.get(url, params={"query": expr}, timeout=timeout_s)
    except requests.RequestException as exc:  # its message quotes the URL-encoded query
        raise PrometheusUnreachable(
            f"{type(exc).__name__} querying {prometheus_url} (timeout {timeout_s:g}s)") from None
    try:
        body = response.json()
    except ValueError:
        raise PrometheusUnreachable(
            f"HTTP {response.status_code} from {prometheus_url} is not Prometheus JSON: "
            f"{response.text[:200]!r}") from None
    if not isinstance(body, dict):
        raise PrometheusUnreachable(f"HTTP {response.status_code}: unexpected answer "
                                    f"{str(body)[:200]!r}")
    if response.status_code != 200 or body.get("status") != "success":
        error = body.get("error") or body
        raise PrometheusQueryError(f"HTTP {response.status_code}: {error}"[:_ERROR_CHARS])
    data = body.get("data")
    result = data.get("result") if isinstance(data, dict) else None
    result_type = str(data.get("resultType", "")) if isinstance(data, dict) else ""
    if isinstance(result, list) and all(isinstance(item, dict) for item in result):
        return QueryResult(result_type or "vector", result)
    if result_type in ("scalar", "string") and isinstance(result, list | tuple):
        return QueryResult(result_type, [{"metric": {}, "value": list(result)}])
    raise PrometheusUnreachable(f"HTTP {response.status_code}: no result in {str(body)[:200]!r}")
