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
from receiver.config.settings import Settings
from receiver.executor.docker_executor import DockerExecutor
from tests.harness.containers import run_container
from tests.harness.procs import free_port


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
                call_http(ctx, HttpParams.model_construct(method="POST", url=url, headers={},
                                                          body=None, expect_status=200,
                                                          timeout_s=10))
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


class _Listener:
    """A raw TCP listener on 127.0.0.1 that records every connection it accepts."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                self.accepted.append(data)
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def _unchecked(url: str) -> HttpParams:
    """Params as a templated URL would arrive after rendering, before any validation."""
    return HttpParams.model_construct(method="GET", url=url, headers={}, body=None,
                                      expect_status=204, timeout_s=5)


def test_http_ssrf_variants_are_refused_and_reach_nothing() -> None:
    """Issue #14: `http://127.0.0.1:P\\@allowed.invalid/` passed an allowlist of
    allowed.invalid (urlsplit's host) and reached 127.0.0.1:P (urllib3's host). Every
    spelling of "somewhere else" is refused, and a real listener on P receives nothing."""
    victim, control = _Listener(), _Listener()
    p, q = victim.port, control.port
    allowed = ["allowed.invalid", f"localhost:{q}", f"127.0.0.1:{q}"]
    ctx = context(http_allowed_hosts=allowed)
    variants = {
        "backslash": f"http://127.0.0.1:{p}\\@allowed.invalid/hook",
        "backslash-path": f"http://allowed.invalid\\@127.0.0.1:{p}/hook",
        "userinfo": f"http://allowed.invalid@127.0.0.1:{p}/hook",
        "userinfo-password": f"http://allowed.invalid:x@127.0.0.1:{p}/hook",
        "userinfo-reverse": f"http://127.0.0.1:{p}@allowed.invalid/hook",
        "decimal": f"http://2130706433:{p}/hook",
        "octal": f"http://0177.0.0.1:{p}/hook",
        "hex": f"http://0x7f.0.0.1:{p}/hook",
        "hex-whole": f"http://0x7f000001:{p}/hook",
        "short": f"http://127.1:{p}/hook",
        "leading-zero": f"http://127.000.000.001:{p}/hook",
        "ipv6-mapped": f"http://[::ffff:127.0.0.1]:{p}/hook",
        "ipv6-mapped-hex": f"http://[::ffff:7f00:1]:{p}/hook",
        "ipv6-long": f"http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/hook",
        "ipv6-zone": f"http://[fe80::1%25lo]:{p}/hook",
        "mixed-case": f"http://LocalHost:{p}/hook",
        "mixed-case-allowed-port": f"http://LocalHost:{q}/hook",
        "trailing-dot": f"http://localhost.:{q}/hook",
        "percent-host": f"http://127.0.0.%31:{p}/hook",
        "tab": f"http://127.0.0.1:{q}\t@127.0.0.1:{p}/hook",
        "newline": f"http://127.0.0.1:{q}/\r\nHost: x",
        "port-leading-zero": f"http://127.0.0.1:0{q}/hook",
        "scheme-case": f"HTTP://127.0.0.1:{q}/hook",
    }
    try:
        for name, url in variants.items():
            with pytest.raises(ActionFailed) as refused:
                call_http(ctx, _unchecked(url))
            assert refused.value.reason == "invalid_url", (name, refused.value)
            with pytest.raises(ValidationError):  # and a static URL fails check-config
                HttpParams(url=url)
        # The allowlist matches host AND port: the right host on another port is refused.
        for url in (f"http://127.0.0.1:{p}/hook", f"http://localhost:{p}/hook"):
            with pytest.raises(ActionFailed) as refused:
                call_http(ctx, _unchecked(url))
            assert refused.value.reason == "host_not_allowed", url
        # Control: the allowed host and port is reached, so the path was live.
        assert call_http(ctx, _unchecked(f"http://127.0.0.1:{q}/ok")) == "204"
        time.sleep(0.3)
        assert victim.accepted == []
        assert len(control.accepted) == 1 and control.accepted[0].startswith(b"GET /ok ")
    finally:
        victim.close()
        control.close()


def test_allowed_hosts_setting_is_canonical() -> None:
    settings = Settings(http_allowed_hosts=["localhost", "127.0.0.1:8080", "[::1]:9000",
                                            "hooks.example.org"])
    assert [str(h) for h in settings.allowed_http_hosts()] == [
        "localhost", "127.0.0.1:8080", "[::1]:9000", "hooks.example.org"]
    for bad in ("LOCALHOST", "localhost.", "2130706433", "127.1", "[::ffff:127.0.0.1]",
                "user@host", "host:0", "host:65536", "http://host", "host/path", " "):
        with pytest.raises(ValidationError, match="http_allowed_hosts"):
            Settings(http_allowed_hosts=[bad])
