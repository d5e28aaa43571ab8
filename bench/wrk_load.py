"""Closed-loop load with wrk, the tool issue #17 measured with.

The same bodies as bench/loadgen.py (its template, a unique id per request), sent by wrk's
C event loop instead of Python senders: on a 2-core machine the Python generator's own CPU
is taken from the servers it measures, and so most from the faster one. wrk's latency
histogram (1 us buckets) comes back whole, so percentiles pool across repeats as loadgen's
samples do. Two differences from loadgen's percentiles: wrk
corrects that histogram for coordinated omission (it adds the requests a stalled
connection did not send, which usually raises the high percentiles), and it keeps the
latencies of non-2xx answers. `max_requests` does not apply: wrk runs for `max_seconds`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.loadgen import HEADERS, PLACEHOLDER, LoadSpec, percentile, template

__all__ = ["available", "run_wrk"]

THREADS = 2
# wrk keeps one 1-us bucket per possible latency up to its timeout (8 bytes each).
TIMEOUT_S = 30

# setup() numbers the threads, request() builds a new body each time (loadgen's uid
# format: tag, sender, sequence), done() writes the totals and the latency histogram.
_SCRIPT = r"""
wrk.method = "POST"
local next_thread = 1
function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

local body_template, tag, seq = nil, 0, 0
function init(args)
  local file = io.open(args[1], "rb")
  body_template = file:read("*a")
  file:close()
  tag = tonumber(args[2])
end

function request()
  seq = seq + 1
  local uid = string.sub(string.format("%04x%02x%05x", tag, thread_id, seq), -11)
  local body = string.gsub(body_template, "@@PLACEHOLDER@@", uid)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local out = io.open(os.getenv("WRK_RESULT"), "w")
  local e = summary.errors
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "status_errors": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d, "latency_us": [',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout))
  for i = 1, #latency do
    local value, count = latency(i)
    out:write(string.format('%s[%d, %d]', i > 1 and ", " or "", value, count))
  end
  out:write("]}\n")
  out:close()
end
""".replace("@@PLACEHOLDER@@", PLACEHOLDER)


def available() -> str | None:
    """The wrk executable, or None (Debian: `apt-get install wrk`)."""
    return shutil.which("wrk")


def run_wrk(spec: LoadSpec) -> dict[str, Any]:
    """One closed-loop run of `spec` (repeat_every=1 only: every request a new body);
    the same summary as loadgen.run_load."""
    wrk = available()
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    if spec.repeat_every != 1 or spec.pace_hz:
        raise ValueError("run_wrk sends a new body every request, closed loop")
    threads = min(THREADS, spec.concurrency)
    if spec.concurrency % threads or spec.max_seconds != int(spec.max_seconds):
        raise ValueError("wrk takes whole seconds and connections split evenly in threads")
    with tempfile.TemporaryDirectory(prefix="autofix-wrk-") as work:
        root = Path(work)
        (root / "body.json").write_text(template(spec.alerts, spec.alertname, spec.one_group))
        (root / "load.lua").write_text(_SCRIPT)
        result = root / "result.json"
        headers = [f"{k}: {v}" for k, v in {**HEADERS, **spec.headers}.items()]
        argv = [wrk, "-t", str(threads), "-c", str(spec.concurrency),
                "-d", f"{int(spec.max_seconds)}s", "--timeout", f"{TIMEOUT_S}s",
                "-s", str(root / "load.lua"),
                *(arg for h in headers for arg in ("-H", h)),
                spec.base_url + spec.path, "--", str(root / "body.json"), str(spec.tag)]
        done = subprocess.run(argv, capture_output=True, text=True,
                              env={**os.environ, "WRK_RESULT": str(result)},
                              timeout=spec.max_seconds + TIMEOUT_S + 120)
        if done.returncode != 0 or not result.exists():
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
        raw = json.loads(result.read_text())
    return _summary(raw, spec.alerts)


def _summary(raw: dict[str, Any], alerts: int) -> dict[str, Any]:
    latencies = [value / 1000 for value, count in raw["latency_us"] for _ in range(count)]
    errors = {name: raw[key] for name, key in (("status>=400", "status_errors"),
                                                ("connect", "connect"), ("read", "read"),
                                                ("write", "write"), ("timeout", "timeout"))
              if raw[key]}
    ok = raw["requests"] - raw["status_errors"]
    span = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"], "ok": ok, "errors": errors, "wall_s": round(span, 3),
        "throughput_rps": ok / span if span > 0 else 0.0,
        "alerts_per_s": ok * alerts / span if span > 0 else 0.0,
        "p50_ms": percentile(latencies, 50), "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99), "max_ms": max(latencies, default=float("nan")),
        "latencies_ms": latencies, "load_generator": "wrk",
    }
