"""One evidence capture: every source in parallel, a hard time budget, redaction before
anything leaves this module.

A source that fails is recorded under `errors`; one still running when the budget ends is
named in `cut` and abandoned (its thread ends with the backend's own timeout): the run
goes on with what arrived.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from receiver.domain.classify import Classification, classify
from receiver.domain.redaction import Redactor
from receiver.executor import EvidenceLimits, EvidenceSource, Executor
from receiver.telemetry.prometheus_api import instant_query

__all__ = ["CaptureRequest", "Evidence", "alert_expression", "capture_evidence"]

_SERIES_KEPT = 10
_ERROR_CHARS = 500
# Caps on what is redacted and stored (issue #26): the alert's expression, and any string
# a source returned (the log tail has its own cap, EvidenceLimits.log_bytes).
EXPRESSION_CHARS = 4096
FIELD_CHARS = 8192


@dataclass(frozen=True)
class CaptureRequest:
    target: str
    generator_url: str
    budget_s: float
    limits: EvidenceLimits
    prometheus_url: str
    cause: str | None = None  # what the operator-intent guard knows (classify)
    # The target was created from a new image (domain/images.NewImage.as_evidence).
    new_image: dict[str, Any] | None = None


@dataclass
class Evidence:
    target: str
    captured_at: datetime
    took_s: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)  # source name → redacted data
    errors: dict[str, str] = field(default_factory=dict)
    cut: list[str] = field(default_factory=list)  # sources the budget cut off
    classification: Classification | None = None

    @property
    def log_text(self) -> str:
        logs = self.results.get("logs")
        return str(logs.get("text", "")) if isinstance(logs, dict) else ""

    def details(self) -> dict[str, Any]:
        """Everything but the log text (stored and served on its own)."""
        results = dict(self.results)
        if isinstance(results.get("logs"), dict):
            results["logs"] = {k: v for k, v in results["logs"].items() if k != "text"}
        return {**results, "errors": self.errors, "cut": self.cut}


def alert_expression(generator_url: str) -> str | None:
    """The rule's expression from a Prometheus generatorURL (`/graph?g0.expr=...`)."""
    try:
        values = parse_qs(urlsplit(generator_url).query).get("g0.expr")
    except ValueError:
        return None
    return values[0] if values and values[0].strip() else None


def _query(prometheus_url: str, expr: str, timeout_s: float) -> dict[str, Any]:
    series = instant_query(prometheus_url, expr, timeout_s).series
    return {"expr": expr, "series": [{"metric": item.get("metric", {}),
                                      "value": (item.get("value") or [None, None])[1]}
                                     for item in series[:_SERIES_KEPT]],
            "series_total": len(series)}


def _redacted(source: EvidenceSource, redactor: Redactor, limit: int) -> Callable[[], Any]:
    """The source, then its redaction, in the same pool thread: redaction is inside the
    budget, and a source whose redaction is late is cut like one whose read is."""
    return lambda: redactor.tree(source(), limit)


def capture_evidence(executor: Executor, request: CaptureRequest, redactor: Redactor,
                     now: datetime) -> Evidence:
    """Never raises: whatever fails is in `errors`, whatever is late in `cut`."""
    started = time.monotonic()
    deadline = started + request.budget_s
    evidence = Evidence(request.target, now)
    sources: dict[str, EvidenceSource] = {}
    try:
        sources.update(executor.evidence_sources(request.target, request.limits))
    except Exception as exc:  # a backend without evidence is recorded, not fatal
        evidence.errors["executor"] = redactor.text(f"{type(exc).__name__}: {exc}",
                                                    _ERROR_CHARS)
    expr = alert_expression(request.generator_url[:2 * EXPRESSION_CHARS])
    if expr:
        expr = expr[:EXPRESSION_CHARS]
        sources["expression"] = lambda: _query(request.prometheus_url, expr, request.budget_s)
    if sources:
        pool = ThreadPoolExecutor(max_workers=len(sources),
                                  thread_name_prefix="autofix-evidence")
        futures: dict[Future[Any], str] = {
            pool.submit(_redacted(fn, redactor, max(request.limits.log_bytes, FIELD_CHARS)
                                  if name == "logs" else FIELD_CHARS)): name
            for name, fn in sources.items()}
        shown_expr = redactor.text(expr, EXPRESSION_CHARS) if expr else None
        done, late = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        pool.shutdown(wait=False, cancel_futures=True)  # never wait for a late source
        for future in done:
            name = futures[future]
            error = future.exception()
            if error is None:
                evidence.results[name] = future.result()
            else:
                evidence.errors[name] = redactor.text(f"{type(error).__name__}: {error}",
                                                      _ERROR_CHARS)
        evidence.cut = sorted(futures[future] for future in late)
        if shown_expr and "expression" not in evidence.results:
            evidence.results["expression"] = {"expr": shown_expr, "series": None}
    if request.new_image is not None:
        evidence.results["new_image"] = redactor.tree(request.new_image, FIELD_CHARS)
    evidence.classification = classify(
        evidence.results.get("state"), evidence.results.get("operator_stop"),
        evidence.results.get("expression"), request.cause, request.new_image is not None)
    evidence.took_s = time.monotonic() - started
    return evidence
