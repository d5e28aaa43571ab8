"""Security properties (issue #9); SECURITY.md maps each claim to the test proving it.

Proven elsewhere, not repeated here:
  - every route but the probes needs a token: test_api.py::
    test_every_route_but_the_probes_requires_a_token
  - label values are data, never templates: test_playbook_rules.py::
    test_label_values_are_data_never_templates, test_sandbox_blocks_unsafe_templates_...
  - exec takes an argv (no shell), kill takes a signal name, http honours an allowlist and
    never follows redirects: test_actions.py
  - no token in a live receiver's log, through Slack retries and a wrong token:
    test_logs.py::test_a_full_scenario_never_logs_a_token_and_names_the_incident
  - only the socket proxies mount the Docker socket (docker-compose config): test_compose.py
"""

from __future__ import annotations

import base64
import hmac
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from receiver.executor import docker_executor as docker_module
from receiver.store.models import Action, Run
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, api_headers, webhook_headers
from tests.harness.app_driver import drain
from tests.harness.busybox import ensure_busybox_image
from tests.harness.containers import run_container, started_at
from tests.payloads import alert, notification

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------- tokens


def test_tokens_are_compared_only_with_hmac_compare_digest(sqlite_url, app_factory,
                                                           monkeypatch) -> None:
    app = app_factory(sqlite_url)
    client = app.test_client()
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("receiver.api.auth.hmac.compare_digest", spy)
    body = notification([alert({"container": "web"})])
    assert client.post("/webhook/alertmanager", json=body,
                       headers=webhook_headers()).status_code == 200
    assert client.get("/api/v1/incidents", headers=api_headers()).status_code == 200
    basic = base64.b64encode(f"alertmanager:{WEBHOOK_TOKEN}".encode()).decode()
    assert client.post("/webhook/alertmanager", json=body,
                       headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.post("/webhook/alertmanager", json=body,
                       headers={"Authorization": "Bearer x"}).status_code == 401
    assert calls == [(WEBHOOK_TOKEN.encode(), WEBHOOK_TOKEN.encode()),
                     (API_TOKEN.encode(), API_TOKEN.encode()),
                     (WEBHOOK_TOKEN.encode(), WEBHOOK_TOKEN.encode()),
                     (b"x", WEBHOOK_TOKEN.encode())]
    # compare_digest alone decides: when it says no, the right token is refused too
    # (there is no second, timing-leaky `==` path).
    monkeypatch.setattr("receiver.api.auth.hmac.compare_digest", lambda a, b: False)
    assert client.post("/webhook/alertmanager", json=body,
                       headers=webhook_headers()).status_code == 401
    assert client.get("/api/v1/incidents", headers=api_headers()).status_code == 401
    # The webhook token does not open the API, nor the API token the webhook.
    monkeypatch.setattr("receiver.api.auth.hmac.compare_digest", real)
    assert client.get("/api/v1/incidents", headers=webhook_headers()).status_code == 401
    assert client.post("/webhook/alertmanager", json=body,
                       headers=api_headers()).status_code == 401
    print(f"\nFIGURES: compare_digest_calls={len(calls)} inputs=4 lost=0")


def test_tokens_are_never_logged_nor_echoed(sqlite_url, app_factory, caplog) -> None:
    app = app_factory(sqlite_url, log_level="DEBUG")
    client = app.test_client()
    wrong = "wrong-" + uuid.uuid4().hex
    caplog.set_level(logging.DEBUG)
    bodies = []
    for headers in (webhook_headers(), {"Authorization": f"Bearer {wrong}"},
                    {"Authorization": "Basic " + base64.b64encode(
                        f"u:{wrong}".encode()).decode()}):
        response = client.post("/webhook/alertmanager", headers=headers,
                               json=notification([alert({"container": "web"})]))
        bodies.append(response.get_data(as_text=True))
    bodies.append(client.get("/api/v1/incidents", headers=api_headers()).get_data(as_text=True))
    bodies.append(client.get("/api/v1/incidents",
                             headers={"Authorization": f"Bearer {wrong}"}).get_data(as_text=True))
    everything = caplog.text + "".join(bodies)
    for secret in (WEBHOOK_TOKEN, API_TOKEN, wrong):
        assert secret not in everything, secret
    print(f"\nFIGURES: requests={len(bodies)} log_records={len(caplog.records)} "
          "tokens_found=0 lost=0")


# ---------------------------------------------------------------------------- opt-in

PLAYBOOKS = """
playbooks:
  - name: restart-it
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 0s
    circuit_breaker: {max_actions: 100, window: 10m, open_for: 1m, open_for_max: 1h,
                      reset_after: 30m}
    actions:
      - restart: {timeout_s: 1}
  - name: restart-composed
    matchers: ['alertname="Composed"']
    target: "{{ labels.prefix }}-{{ labels.suffix }}"
    cooldown: 0s
    circuit_breaker: {max_actions: 100, window: 10m, open_for: 1m, open_for_max: 1h,
                      reset_after: 30m}
    actions:
      - kill: {signal: SIGKILL}
"""


def crafted_label_sets(labelled: Any, unlabelled: Any) -> list[dict[str, str]]:
    """Label sets an attacker who can shape alert labels might try, to reach `unlabelled`."""
    lab, unl, uid = labelled.name, unlabelled.name, unlabelled.id
    return [
        {"container": unl},
        {"container": unl + "\n"},
        {"container": f"  {unl}\t"},
        {"container": f"other/../{unl}"},
        {"container": f"{lab}/../{unl}"},
        {"container": f"/{unl}"},
        {"container": f"{lab}\n{unl}"},
        {"container": f"{unl};{lab}"},
        {"container": f"{lab} {unl}"},
        {"container": f"{unl}\x00{lab}"},
        {"container": unl, "instance": lab, "target": lab, "name": lab, "job": lab},
        {"container": "{{ labels.other }}", "other": unl},
        {"container": "{{ labels.other }}", "other": lab},
        {"container": "{% raw %}" + unl},
        {"container": uid[:12]},  # Docker resolves ID prefixes: the guard must see through
        {"container": uid},
        {"container": unl.upper()},
        {"container": unl.replace("t", "\u0442", 1)},  # a Cyrillic look-alike
        {"instance": unl},  # no container label at all
        {"alertname": "Composed", "prefix": unl.split("-")[0], "suffix": unl.split("-", 1)[1]},
    ]


def _fire(client: Any, labels: dict[str, str]) -> None:
    starts = datetime.now(UTC)
    body = notification([alert(labels, starts_at=starts)])
    response = client.post("/webhook/alertmanager", json=body, headers=webhook_headers())
    if any("\x00" in value for value in labels.values()):
        # Refused outright: PostgreSQL cannot store NUL, so no backend accepts it.
        assert response.status_code == 400, response.get_data(as_text=True)
        assert "NUL" in response.json["message"]
        return
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.fixture
def two_containers(private_dockerd):
    client = private_dockerd.client()
    ensure_busybox_image(client)
    labelled, unlabelled = run_container(client), run_container(client, labelled=False)
    yield labelled, unlabelled
    for container in (labelled, unlabelled):
        container.remove(force=True)


@pytest.fixture
def guarded_app(sqlite_url, app_factory, private_dockerd, tmp_path):
    """A receiver with the restart playbooks, acting on the private dockerd."""
    playbooks = tmp_path / "playbooks.yml"
    playbooks.write_text(PLAYBOOKS)
    return app_factory(sqlite_url, docker_host=private_dockerd.url, playbooks=playbooks)


def test_unlabelled_container_is_unreachable_through_any_path(
        guarded_app, two_containers) -> None:
    labelled, unlabelled = two_containers
    app = guarded_app
    client = app.test_client()
    untouched = started_at(unlabelled)
    label_sets = crafted_label_sets(labelled, unlabelled)

    # 1. Alerts: each crafted label set, then a control alert for the labelled container.
    for labels in label_sets:
        _fire(client, labels)
        drain(app)
    control_before = started_at(labelled)
    _fire(client, {"container": labelled.name})
    drain(app)
    assert started_at(labelled) != control_before, "the control alert must act"

    # 2. Manual runs through the API, same label sets, both playbooks.
    manual: dict[int, int] = {}
    for labels in label_sets:
        name = "restart-composed" if labels.get("alertname") == "Composed" else "restart-it"
        response = client.post(f"/api/v1/playbooks/{name}/run", headers=api_headers(),
                               json={"labels": labels, "reason": "security test"})
        manual[response.status_code] = manual.get(response.status_code, 0) + 1
        if response.status_code == 202:  # only the labelled one may be queued
            assert response.json["target"] == labelled.name, labels
        else:
            assert response.status_code in (400, 403, 404), (labels, response.json)
    drain(app)

    assert started_at(unlabelled) == untouched
    unlabelled.reload()
    assert unlabelled.status == "running"
    with app.extensions["autofix"].database.session() as session:
        acted = list(session.scalars(select(Action).where(Action.action != "guard")))
        runs = list(session.scalars(select(Run)))
        skipped = {r.reason for r in session.scalars(
            select(Action).where(Action.outcome == "skipped"))}
    assert {a.target for a in acted} <= {labelled.name}, [(a.action, a.target) for a in acted]
    refused = [r for r in runs if r.target != labelled.name]
    assert all(r.status == "skipped" for r in refused), [(r.target, r.status) for r in refused]
    assert skipped <= {"target_not_allowed", "invalid_target", "target_not_found",
                       "already_recovered"}, skipped
    print(f"\nFIGURES: crafted_label_sets={len(label_sets)} alert_runs={len(runs)} "
          f"refused_alert_runs={len(refused)} manual_by_status={dict(sorted(manual.items()))} "
          f"unlabelled_restarts=0 labelled_actions={len(acted)} skip_reasons={sorted(skipped)} "
          "lost=0")


def test_the_receiver_never_acts_on_its_own_container(
        sqlite_url, app_factory, private_dockerd, two_containers, tmp_path) -> None:
    labelled, _ = two_containers
    playbooks = tmp_path / "playbooks.yml"
    playbooks.write_text(PLAYBOOKS)
    app = app_factory(sqlite_url, docker_host=private_dockerd.url, playbooks=playbooks)
    # As inside Docker: the receiver's hostname is its container's short id. Even an
    # opted-in container is refused when it is the receiver itself.
    app.extensions["autofix"].executors.default.own_ids = frozenset({labelled.id[:12]})
    before = started_at(labelled)
    client = app.test_client()
    _fire(client, {"container": labelled.name})
    drain(app)
    manual = client.post("/api/v1/playbooks/restart-it/run", headers=api_headers(),
                         json={"labels": {"container": labelled.name}, "reason": "self"})
    assert manual.status_code == 403 and manual.json["reason"] == "target_not_allowed"
    assert started_at(labelled) == before
    with app.extensions["autofix"].database.session() as session:
        [skip] = session.scalars(select(Action)).all()
    assert (skip.outcome, skip.reason) == ("skipped", "target_not_allowed")
    assert "autofix itself" in (skip.error or "")
    # protected_containers refuses a name the same way.
    protected = app_factory(sqlite_url, docker_host=private_dockerd.url, playbooks=playbooks,
                            protected_containers=[labelled.name])
    refused = protected.test_client().post(
        "/api/v1/playbooks/restart-it/run", headers=api_headers(),
        json={"labels": {"container": labelled.name}, "reason": "protected"})
    assert refused.status_code == 403 and "protected" in refused.json["message"]
    assert started_at(labelled) == before
    print("\nFIGURES: own_container_paths=2 protected_paths=1 acted=0 lost=0")


def test_own_container_ids_come_from_the_hostname_inside_docker(monkeypatch) -> None:
    monkeypatch.setattr(docker_module.socket, "gethostname", lambda: "0123456789ab")
    monkeypatch.setattr(docker_module.os.path, "exists", lambda path: path == "/.dockerenv")
    assert docker_module.own_container_ids() == frozenset({"0123456789ab"})
    monkeypatch.setattr(docker_module.os.path, "exists", lambda path: False)
    assert docker_module.own_container_ids() == frozenset()


# ---------------------------------------------------------------------------- socket proxy

def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def _allow_rules(cfg: Path) -> list[str]:
    """The `http-request allow` lines of an HAProxy config, in order, and the final deny."""
    lines = [line.split("#")[0].strip() for line in cfg.read_text().splitlines()]
    return [line for line in lines if line.startswith("http-request ")]


def test_socket_proxies_grant_only_what_each_client_needs() -> None:
    """Static: the compose file and the proxies' HAProxy configs as written. The live proof,
    call by call through HAProxy to a real dockerd, is tests/test_socket_proxy.py, and
    through the running stack `make compose-test` (tests/harness/compose_stack.py)."""
    services = _compose()["services"]
    networks = _compose()["networks"]
    receiver_proxy = services["docker-proxy"]
    readonly_proxy = services["docker-proxy-ro"]
    opted_in = "http-request lua.autofix_opted_in /var/run/docker.sock autofix.enable"
    def only_client(name: str) -> str:  # over TLS, one client certificate's CN gets in
        return ('http-request deny deny_status 403 if { ssl_fc } !{ ssl_c_s_dn(CN) -m str '
                f'"${{AUTOFIX_PROXY_TLS_CLIENT-{name}}}" }}')

    assert _allow_rules(REPO / "socket-proxy" / "receiver.cfg") == [
        only_client("autofix-receiver"),
        # the container a change names (by id) must carry autofix.enable=true
        f"{opted_in} if METH_POST c_lifecycle",
        f"{opted_in} if METH_POST exec_create",
        # rollback_image's rename and create, each checked by rollback.lua
        "http-request lua.autofix_rename_ok /var/run/docker.sock autofix.enable"
        " if METH_POST c_rename",
        "http-request lua.autofix_create_ok /var/run/docker.sock autofix.enable"
        " if METH_POST c_create",
        # and the quarantined container's restart policy set to "no"
        "http-request lua.autofix_update_ok /var/run/docker.sock autofix.enable"
        " if METH_POST c_update",
        "http-request allow if read ping !has_body",
        "http-request allow if read version !has_body",
        "http-request allow if read info !has_body",
        "http-request allow if read c_inspect !has_body",
        "http-request allow if read c_list !has_body",  # the dependents' list
        # a start never reconfigures; exec only with exec_run's body
        "http-request allow if METH_POST c_lifecycle !has_body opted_in",
        "http-request allow if METH_POST exec_create exec_create_body opted_in",
        "http-request allow if METH_POST exec_start exec_start_body",
        "http-request allow if read exec_inspect !has_body",
        "http-request allow if read c_evidence !has_body",  # logs and stats, read-only
        "http-request allow if read events !has_body",
        "http-request allow if read i_inspect !has_body",  # image inspect by id
        "http-request allow if METH_POST c_rename !has_body rename_ok",
        "http-request allow if METH_POST c_create create_ok",
        "http-request allow if METH_POST c_update no_restart_body update_ok",
        "http-request deny deny_status 403",
    ]
    assert _allow_rules(REPO / "socket-proxy" / "prometheus.cfg") == [
        only_client("autofix-prometheus"),
        "http-request deny deny_status 403 if has_body",
        "http-request allow if read ping",
        "http-request allow if read version",
        "http-request allow if read containers",
        "http-request allow if read networks",
        "http-request deny deny_status 403",
    ]
    for proxy, files in ((receiver_proxy, ["receiver.cfg", "optin.lua", "rollback.lua"]),
                         (readonly_proxy, ["prometheus.cfg"])):
        assert "ports" not in proxy  # never published, not even on loopback
        assert proxy["volumes"] == [
            "${DOCKER_SOCKET:-/var/run/docker.sock}:/var/run/docker.sock",
            f"./socket-proxy/{files[0]}:/usr/local/etc/haproxy/haproxy.cfg:ro",
            *(f"./socket-proxy/{name}:/usr/local/etc/haproxy/{name}:ro" for name in files[1:])]
        assert proxy["cap_drop"] == ["ALL"] and proxy["read_only"] is True
    # Each proxy sits on its own internal network, shared with exactly one client.
    assert networks["docker-api"] == {"internal": True}
    assert networks["docker-api-ro"] == {"internal": True}
    members = {net: sorted(name for name, svc in services.items()
                           if net in (svc.get("networks") or []))
               for net in ("docker-api", "docker-api-ro")}
    assert members == {"docker-api": ["docker-proxy", "receiver"],
                       "docker-api-ro": ["docker-proxy-ro", "prometheus"]}
    assert services["receiver"]["environment"]["DOCKER_HOST"] == "tcp://docker-proxy:2375"
    assert not any("docker.sock" in str(v) for v in services["receiver"].get("volumes", []))
    # The receiver's own container carries no opt-in label (autofix never restarts itself).
    assert "autofix.enable" not in (services["receiver"].get("labels") or {})


def test_alertmanager_sends_the_webhook_token_from_a_file() -> None:
    config = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    hooks = [hook for receiver in config["receivers"]
             for hook in receiver.get("webhook_configs", [])]
    assert hooks
    for hook in hooks:
        auth = hook["http_config"]["authorization"]
        assert auth.get("credentials_file", "").startswith("/run/secrets/")
        assert "credentials" not in auth
