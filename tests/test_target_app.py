"""target_app as a real gunicorn process on a free loopback port: every fault really
changes what Prometheus would see (metrics move, the process exits, or stops answering)."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, http_ok, wait_for

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-fault-token"


class App:
    def __init__(self, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        full_env = {**os.environ, "TARGET_APP_BIND": f"{LOOPBACK}:{self.port}",
                    "TARGET_APP_FAULT_TOKEN": TOKEN, **(env or {})}
        self.proc = ManagedProcess([sys.executable, "-m", "target_app"], tmp_path / "app.log",
                                   env=full_env, cwd=REPO)

    def start(self) -> App:
        self.proc.start()
        try:
            wait_for(lambda: http_ok(f"{self.url}/healthz"), 20, "target_app")
        except TimeoutError:
            raise AssertionError(self.proc.log_tail()) from None
        return self

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def fault(self, kind: str, body: object = None, token: str | None = TOKEN,
              raw: bytes | None = None) -> tuple[int, dict]:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"{self.url}/fault/{kind}", data=data,
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        status, body = self.get("/metrics")
        assert status == 200
        samples = {}
        for family in text_string_to_metric_families(body.decode()):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def metric(self, name: str, **labels: str) -> float:
        want = tuple(sorted(labels.items()))
        return sum(v for (n, lbls), v in self.metrics().items()
                   if n == name and set(want) <= set(lbls))


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    instance = App(tmp_path).start()
    yield instance
    instance.proc.stop(timeout=10)


def test_normal_endpoints_and_metrics(app: App) -> None:
    for path in ("/", "/api/work", "/api/work?rounds=10"):
        assert app.get(path)[0] == 200
    assert app.get("/nope")[0] == 404
    assert app.metric("http_requests_total", route="/api/work", status="200") == 2
    assert app.metric("http_requests_total", route="unmatched", status="404") == 1
    assert app.metric("http_request_duration_seconds_bucket", route="/", le="0.05") == 1
    assert app.metric("http_request_duration_seconds_bucket", route="/", le="10.0") == 1
    assert app.metric("process_cpu_seconds_total") > 0
    assert app.metric("process_resident_memory_bytes") > 0


def test_fault_api_validates_input_and_token(app: App) -> None:
    status, body = app.fault("error-spike", raw=b"{not json")
    assert status == 400 and "not valid JSON" in body["error"]
    assert app.fault("error-spike", [1, 2])[0] == 400
    status, body = app.fault("error-spike", {"ratio": "lots"})
    assert status == 400 and "ratio must be a number" in body["error"]
    status, body = app.fault("error-spike", {"ratio": 2})
    assert status == 400 and "<= 1" in body["error"]
    status, body = app.fault("cpu-spike", {"cores": 2})
    assert status == 400 and "unknown field" in body["error"]
    assert app.fault("explode")[0] == 404
    assert app.fault("stop-all", token=None)[0] == 401
    assert app.fault("stop-all", token="wrong")[0] == 401
    assert app.fault("stop-all")[0] == 202
    assert app.proc.alive()


def test_error_spike_moves_the_error_ratio(app: App) -> None:
    assert app.fault("error-spike", {"ratio": 0.5, "duration_s": 30})[0] == 202
    codes = [app.get("/")[0] for _ in range(200)]
    ratio = codes.count(500) / len(codes)
    assert 0.35 < ratio < 0.65, ratio
    assert app.metric("http_requests_total", route="/", status="500") == codes.count(500)
    # Probes are exempt: health stays green during an error spike.
    assert all(app.get("/healthz")[0] == 200 for _ in range(20))
    assert app.fault("stop-all")[0] == 202
    assert all(app.get("/")[0] == 200 for _ in range(20))


def test_overlapping_spikes_keep_their_own_windows(app: App) -> None:
    app.fault("error-spike", {"ratio": 1.0, "duration_s": 1.5})
    app.fault("error-spike", {"ratio": 0.5, "duration_s": 60})
    app.fault("latency-spike", {"seconds": 0.05, "duration_s": 60})
    assert app.get("/")[0] == 500  # the 100% window dominates while it is open
    time.sleep(1.6)
    codes = [app.get("/")[0] for _ in range(40)]
    assert 0 < codes.count(200) < 40  # the 50% window is still there, on its own
    state = json.loads(app.get("/fault")[1])
    assert state["error_ratio"] == 0.5 and state["extra_latency_s"] == 0.05


def test_latency_spike_slows_requests_and_the_histogram(app: App) -> None:
    app.fault("latency-spike", {"seconds": 0.6, "duration_s": 30})
    started = time.monotonic()
    assert app.get("/")[0] == 200
    assert time.monotonic() - started >= 0.6
    assert app.metric("http_request_duration_seconds_bucket", route="/", le="0.5") == 0
    assert app.metric("http_request_duration_seconds_bucket", route="/", le="1.0") == 1
    started = time.monotonic()
    assert app.get("/metrics")[0] == 200
    assert time.monotonic() - started < 0.5  # scrapes are not delayed


def _thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) per thread of a process, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        seconds[task.name] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def test_cpu_spike_burns_cpu_in_parallel_threads(app: App) -> None:
    """Several threads of the one worker process burn CPU at once (hashlib frees the GIL),
    so process_cpu_seconds_total can exceed one core. Per-thread CPU time proves it without
    a timing threshold that a busy machine could break."""
    assert app.proc.proc is not None
    [worker] = Path(f"/proc/{app.proc.pid}/task/{app.proc.pid}/children").read_text().split()
    before = app.metric("process_cpu_seconds_total")
    threads_before = _thread_cpu_seconds(int(worker))
    assert app.fault("cpu-spike", {"duration_s": 6, "threads": 2})[0] == 202
    time.sleep(3)  # read while the burner threads still exist (/proc forgets ended threads)
    grown = {tid: cpu - threads_before.get(tid, 0.0)
             for tid, cpu in _thread_cpu_seconds(int(worker)).items()}
    burners = [tid for tid, cpu in grown.items() if cpu >= 0.2]
    assert len(burners) >= 2, grown
    assert app.metric("process_cpu_seconds_total") - before >= sum(grown[t] for t in burners) - 0.1
    assert app.get("/healthz", timeout=2)[0] == 200  # still serving while burning


def test_memory_leak_grows_rss_until_stop_all(app: App) -> None:
    before = app.metric("process_resident_memory_bytes")
    app.fault("memory-leak", {"mb_per_s": 100, "duration_s": 10, "max_mb": 80})
    wait_for(lambda: app.metric("target_app_leaked_bytes") >= 80 * 2**20, 10, "leak to 80 MiB")
    grown = app.metric("process_resident_memory_bytes") - before
    assert grown > 60 * 2**20, grown
    assert app.fault("stop-all")[0] == 202
    assert app.metric("target_app_leaked_bytes") == 0


def test_crash_makes_the_whole_server_exit_non_zero(app: App) -> None:
    assert app.fault("crash")[0] == 202
    assert app.proc.proc is not None
    assert app.proc.proc.wait(timeout=15) == 3  # gunicorn halts with WORKER_BOOT_ERROR


def test_hang_keeps_the_process_alive_but_silent(app: App) -> None:
    assert app.fault("hang")[0] == 202
    for path in ("/healthz", "/metrics", "/"):
        with pytest.raises((TimeoutError, urllib.error.URLError, OSError)):
            app.get(path, timeout=1.5)
    assert app.proc.alive()
    assert not http_ok(f"{app.url}/healthz", timeout=1)


def test_self_traffic_generates_requests(tmp_path: Path) -> None:
    app = App(tmp_path, env={"TARGET_APP_SELF_TRAFFIC_RPS": "20"}).start()
    try:
        wait_for(lambda: app.metric("http_requests_total", route="/") >= 10, 10, "self-traffic")
    finally:
        app.proc.stop(timeout=10)
