"""Actions one by one against real components: exec argv, http allowlist, promql_check."""

from __future__ import annotations

import http.server
import threading
import time
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from receiver.actions.check_actions import (
    HttpParams,
    PromqlCheckParams,
    call_http,
    check_promql,
)
from receiver.actions.docker_actions import ExecParams, KillParams, exec_command
from receiver.actions.registry import ActionContext, ActionFailed, ActionRegistry, IncidentView
from receiver.executor.docker_executor import DockerExecutor
from receiver.settings import Settings
from tests.harness.procs import free_port
from tests.test_playbooks_docker import run_container


def context(executor=None, target: str = "t", **settings) -> ActionContext:
    return ActionContext(
        target=target, playbook="p", run_id=1,
        incident=IncidentView(1, "A", {}, {}, datetime.now(UTC)),
        executor=executor, settings=Settings(**settings), escalate=lambda _: None,
        notify=lambda *_: None)


def test_exec_runs_an_argv_list_without_a_shell(private_dockerd) -> None:
    container = run_container(private_dockerd.client())
    ctx = context(DockerExecutor(private_dockerd.url, 30), container.name)
    assert exec_command(ctx, ExecParams(argv=["echo", "$(id)", ";", "ok"])) == "exit 0"
    with pytest.raises(ActionFailed) as failed:
        exec_command(ctx, ExecParams(argv=["false"]))
    assert failed.value.reason == "unexpected_exit_code"
    with pytest.raises(ValidationError):
        ExecParams.model_validate({"argv": "echo hi; reboot"})  # a string is not an argv


def test_kill_signal_must_be_a_signal_name() -> None:
    assert KillParams(signal="SIGHUP").signal == "SIGHUP"
    with pytest.raises(ValidationError):
        KillParams(signal="9; rm -rf /")


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self) -> None:
        self.hits.append(self.path)
        self.send_response(204 if self.path == "/ok" else 302)
        self.send_header("Location", "http://example.invalid/")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_http_calls_only_allowed_hosts_and_never_follows_redirects() -> None:
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ctx = context(http_allowed_hosts=["127.0.0.1"])
        ok = HttpParams(method="POST", url=f"http://127.0.0.1:{port}/ok", expect_status=204)
        assert call_http(ctx, ok) == "204"
        moved = HttpParams(method="POST", url=f"http://127.0.0.1:{port}/moved")
        with pytest.raises(ActionFailed) as redirected:
            call_http(ctx, moved)
        assert redirected.value.reason == "unexpected_status"
        for url, reason in ((f"http://localhost:{port}/ok", "host_not_allowed"),
                            ("http://10.0.0.1/ok", "host_not_allowed"),
                            ("file:///etc/passwd", "invalid_url")):
            with pytest.raises(ActionFailed) as refused:
                call_http(ctx, HttpParams(method="POST", url=url))
            assert refused.value.reason == reason
        assert _Handler.hits == ["/ok", "/moved"]
    finally:
        server.shutdown()


def test_promql_check_fails_cleanly_when_prometheus_is_down() -> None:
    ctx = context(prometheus_url=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(ActionFailed) as failed:
        check_promql(ctx, PromqlCheckParams(expr="up", timeout_s=1.5, interval_s=0.5))
    assert failed.value.reason == "prometheus_unreachable"
    assert time.monotonic() - started < 10  # bounded by its own timeout, not hung


def test_promql_check_against_real_prometheus(tmp_path) -> None:
    from tests.harness.prometheus import start_prometheus

    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}}
    prometheus = start_prometheus(tmp_path, config, [])
    try:
        ctx = context(prometheus_url=prometheus.url)
        assert check_promql(ctx, PromqlCheckParams(expr="vector(1)", timeout_s=10))
        with pytest.raises(ActionFailed) as failed:
            check_promql(ctx, PromqlCheckParams(expr="vector(1) == 2", timeout_s=1,
                                                interval_s=0.5))
        assert failed.value.reason == "condition_not_met"
        with pytest.raises(ActionFailed) as invalid:
            check_promql(ctx, PromqlCheckParams(expr="sum(", timeout_s=1, interval_s=0.5))
        assert invalid.value.reason == "query_error"
    finally:
        prometheus.stop()


def test_registry_rejects_wrong_signatures() -> None:
    registry = ActionRegistry()

    def untyped(ctx, params):
        return None

    def three(ctx: ActionContext, params: ExecParams, extra: int) -> None:
        return None

    with pytest.raises(TypeError):
        registry.register("untyped", untyped, mutating=False)
    with pytest.raises(TypeError):
        registry.register("three", three, mutating=False)
    registry.register("exec", exec_command, mutating=True)
    with pytest.raises(ValueError):
        registry.register("exec", exec_command, mutating=True)
