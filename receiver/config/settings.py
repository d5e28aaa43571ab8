"""One settings class: every knob, validated at startup, read from AUTOFIX_* variables.

Each secret may instead be read from a file named by AUTOFIX_<NAME>_FILE, the way Docker
secrets and Alertmanager's credentials_file work. Tokens and the Slack signing secret must be
at least 16 characters, not blank, and the webhook, API (operator) and read-only tokens, the
Slack bot token and signing secret must all differ; a secret file others can read is a
warning at start (`secret_file_warnings`).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from receiver.config.docker_hosts import LOCAL_HOST, DockerHostSpec, parse_docker_hosts
from receiver.domain.redaction import compile_patterns
from receiver.domain.safe_url import AllowedHost, UnsafeUrl, parse_allowed_host

__all__ = ["MIN_TOKEN_LENGTH", "SECRET_FIELDS", "Settings", "normalize_database_url"]

MIN_TOKEN_LENGTH = 16
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile("".join(rf"(?:(?P<{unit}>\d+){unit})?" for unit in _UNIT_S))
_SECONDS = re.compile(r"\d+(?:\.\d+)?")

DEFAULT_PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks.yml"  # receiver/
# The database URL can carry a password, so it is file-readable and redacted like a token.
SECRET_FIELDS = ("webhook_token", "api_token", "read_token", "slack_bot_token",
                 "slack_signing_secret", "slack_webhook_url",
                 "outbound_webhook_url", "database_url")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTOFIX_", extra="ignore")
    _fleet: dict[str, DockerHostSpec] = PrivateAttr(default_factory=dict)

    database_url: str = Field(
        "sqlite:///autofix.db",
        description="SQLAlchemy URL. SQLite is the embedded default; use postgresql://user:"
        "password@host:5432/db (psycopg2; postgres:// works too) for more than one worker.",
    )
    webhook_token: SecretStr | None = Field(
        None, description="Bearer token (or basic-auth password) Alertmanager must present.")
    api_token: SecretStr | None = Field(
        None, description="Operator token for /api/v1 and /-/reload: reads and every change "
        "(runs, approvals, breaker resets, pause, acknowledge/close, reload).")
    read_token: SecretStr | None = Field(
        None, description="Optional read-only token: lists and reads under /api/v1 (and the "
        "OpenAPI document); 403 on every route that changes something.")
    allow_unauthenticated: bool = Field(
        False, description="Start without tokens. Logs a warning at every start.")
    playbooks: Path = Field(DEFAULT_PLAYBOOKS, description="Path of the playbooks YAML file.")
    dry_run: bool = Field(
        False, description="Record what would be done for every playbook; touch nothing.")
    max_body_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="Largest webhook body accepted (413 above).")
    ingest_defer_alerts: int = Field(
        1000, ge=0, description="A notification of more alerts than this is acknowledged "
        "(202) once stored, and a worker files its alerts right after; 0 files every "
        "notification before answering.")

    docker_host: str | None = Field(
        None, description="Docker endpoint; unset means the SDK's DOCKER_HOST default.")
    docker_timeout_s: float = Field(30.0, gt=0, description="Timeout of one Docker API call.")
    docker_hosts: str | None = Field(
        None, description="Several Docker hosts: a JSON object, or the path of a JSON/YAML "
        "file, mapping a host name to {url, tls: {ca, cert, key}, timeout_s} (docs/deploy.md, "
        "Fleet). An alert's host is the playbook's `host` (default the `host` label). Not "
        "with AUTOFIX_DOCKER_HOST, which is the one host `local`. A file is read again on "
        "SIGHUP.")
    swarm_enabled: bool = Field(
        False, description="Enable the Swarm backend: playbooks with `executor: swarm` act "
        "on Swarm services through a Swarm manager.")
    swarm_host: str | None = Field(
        None, description="The Swarm manager's Docker endpoint; unset means docker_host.")
    swarm_converge_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="How long a Swarm restart, scale or rollback waits "
        "for the service to converge before the next step judges it.")
    swarm_self_service: str | None = Field(
        None, description="The receiver's own Swarm service (name or ID), never acted on; "
        "detected from its container's labels when it runs on the manager's node.")
    opt_in_label: str = Field(
        "autofix.enable", description="Label that must be 'true' before autofix acts: the "
        "container's (docker backend), the service's (swarm backend).")
    protected_containers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Containers never acted on (the receiver's own and the database's): "
                    "names, IDs or ID prefixes, matched however an alert names the container. "
                    "Comma-separated (a,b) or a JSON list.")
    recovery_lookback_s: float = Field(
        60.0, ge=0, description="A container Docker's restart policy restarted this long "
        "before the alert began counts as already recovered.")
    host_storm_targets: int = Field(
        5, ge=0, description="More distinct targets than this on one Docker host (or Swarm "
        "node) admitted within AUTOFIX_HOST_STORM_WINDOW_S is a host storm: no further "
        "mutating action on that host for the window. 0 disables the guard.")
    host_storm_window_s: float = Field(
        60.0, gt=0, description="The host storm guard's window, and how long a storm holds "
        "after its last skipped run.")
    new_image_window: float = Field(
        3600.0, ge=0, le=30 * 86400, description="Seconds, or a duration like 1h or 30m. A "
        "container created less than this ago from another image than its predecessor "
        "under the same name is a bad update (classification `bad_update`): the playbook's "
        "`on_new_image` decides. 0 turns the check off.")
    inventory_interval: float = Field(
        60.0, ge=0, le=86400, description="Seconds, or a duration like 1m. How often each "
        "worker lists the containers (one Docker API call) to record the image of those "
        "not yet in the image history. 0 turns the inventory off (the events follower and "
        "the runs still record).")
    max_concurrent_runs: int = Field(4, gt=0, description="Global cap on runs executing at once.")
    max_runs_per_host: int | None = Field(
        None, gt=0, description="Among several Docker hosts, the most runs acting on one "
        "host at once (of AUTOFIX_MAX_CONCURRENT_RUNS and of each process's runner "
        "threads): a slow or hung host holds at most this many. Unset: half the global "
        "cap, at least 1. At most AUTOFIX_MAX_CONCURRENT_RUNS.")
    runner_threads: int = Field(
        4, gt=0, description="Runs a single receiver process executes in parallel.")
    runner_poll_s: float = Field(
        0.5, gt=0, description="How often each receiver process looks for runs queued by another.")
    run_lease_s: float = Field(
        30.0, gt=0, description="A run whose worker has not heartbeated for this long is "
        "reconciled as interrupted (a lost host; a dead worker is reconciled at once).")
    record_retry_s: float = Field(
        120.0, gt=0, description="How long a run retries writing an outcome while the "
        "database is unavailable (backoff up to 5 s) before it logs the outcome and gives up.")
    prometheus_url: str = Field(
        "http://127.0.0.1:9090", description="Prometheus for promql_check steps and the "
        "alert expression's value in the evidence.")
    precondition_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Timeout of each query of a playbook's `require:` "
        "(on AUTOFIX_PROMETHEUS_URL); no answer in time skips the run (precondition_failed).")
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost"],
        description="Hosts the http action may call: `host` (any port) or `host:port`, "
        "lower case, IPv4 as a.b.c.d, IPv6 as [::1]:port. Comma-separated (a,b) or a JSON "
        "list.")
    header_timeout_s: float = Field(
        10.0, gt=0, le=300, description="A client must send its request headers within this "
        "time (slow clients are closed without holding a worker thread).")
    body_timeout_s: float = Field(
        5.0, gt=0, le=3600, description="A client must send its whole request body within "
        "this time (wall clock) once its headers arrived, or gets a 408; no worker thread "
        "waits for it. Raise it for large bodies over slow links.")

    tls_cert_file: Path | None = Field(
        None, description="PEM certificate (chain) to serve HTTPS with; needs "
        "AUTOFIX_TLS_KEY_FILE. Unset: plain HTTP. Read again on SIGHUP.")
    tls_key_file: Path | None = Field(
        None, description="PEM private key of AUTOFIX_TLS_CERT_FILE (readable by the "
        "receiver only).")

    slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming webhook URL.")
    slack_bot_token: SecretStr | None = Field(None, description="Slack bot token (xoxb-...).")
    slack_channel: str | None = Field(None, description="Channel for chat.postMessage.")
    slack_signing_secret: SecretStr | None = Field(
        None, description="Slack app signing secret: turns on POST /slack/interactions "
        "(Approve/Deny buttons); every request's signature and timestamp are verified.")
    slack_approvers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Slack user IDs (U…) whose Approve/Deny clicks count; nobody else's do. "
                    "Comma-separated (a,b) or a JSON list.")
    slack_api_url: str = Field(
        "https://slack.com/api/", description="Slack Web API base URL (tests use a local one).")
    outbound_webhook_url: SecretStr | None = Field(
        None, description="Generic JSON webhook for every notification event.")
    notify_max_attempts: int = Field(6, gt=0, description="Send attempts per notification.")
    notify_timeout_s: float = Field(10.0, gt=0, description="Timeout of one notification send.")
    notify_backoff_s: float = Field(
        2.0, gt=0, description="Wait before the first retry of a send; doubles per attempt.")
    notify_backoff_max_s: float = Field(300.0, gt=0, description="Cap on the retry wait.")
    notify_poll_s: float = Field(
        1.0, gt=0, description="How often the sender looks for due notifications.")
    grafana_url: str = Field("http://127.0.0.1:3000", description="Grafana, for message links.")
    alertmanager_url: str = Field(
        "http://127.0.0.1:9093", description="Alertmanager, for silence links in messages.")
    prometheus_external_url: str | None = Field(
        None, description="Prometheus' external URL (its --web.external-url): an alert's "
        "Source button is shown only when its generatorURL lies under it; unset means "
        "AUTOFIX_PROMETHEUS_URL.")
    runbook_base_url: str | None = Field(
        None, description="Base URL of the runbooks: a relative runbook_url annotation is "
        "joined to it, an absolute one becomes a Runbook button only when it lies under it; "
        "unset means no Runbook button.")

    evidence_budget_s: float = Field(
        3.0, gt=0, le=60, description="Longest one evidence capture may take; it then goes on "
        "with what it has and records what was cut.")
    evidence_log_lines: int = Field(
        200, ge=0, le=10_000, description="Log lines (stdout and stderr, with timestamps) "
        "an evidence capture keeps.")
    evidence_log_bytes: int = Field(
        64 * 1024, ge=0, le=1024 * 1024, description="Most bytes of log an evidence capture "
        "keeps (the newest).")
    redact_patterns: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Regular expressions masked in evidence before it is stored or sent, "
        "besides the defaults (bearer tokens, password=, AWS keys, private keys, URLs with "
        "userinfo). A JSON list, or one pattern per line; a bad pattern stops the start.")

    retention_days: int = Field(
        0, ge=0, le=36500,
        description="Prune rows older than this many days, hourly; 0 turns it off.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the JSON logs.")
    access_log: bool = Field(
        False, description="Log every HTTP request (gunicorn's access log) as a JSON line.")

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in SECRET_FIELDS:
            path = os.environ.get(f"AUTOFIX_{name.upper()}_FILE")
            if path and not data.get(name):
                try:
                    data[name] = Path(path).read_text().strip()
                except OSError as exc:
                    raise ValueError(
                        f"AUTOFIX_{name.upper()}_FILE: cannot read {path}: {exc}") from exc
        return data

    @field_validator("protected_containers", "http_allowed_hosts", "slack_approvers",
                     mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        """Lists come as `a,b` or as JSON `["a", "b"]`; blanks around items are ignored."""
        if not isinstance(value, str):
            return value
        return _json_list_or(value, value.split(","), 'write a,b or ["a", "b"]')

    @field_validator("new_image_window", "inventory_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        """A number of seconds, or whole numbers with units largest first (1h30m, 90s)."""
        if not isinstance(value, str) or not value.strip() or _SECONDS.fullmatch(value.strip()):
            return value
        found = _DURATION.fullmatch(value.strip())
        if found is None:
            raise ValueError(f"not a duration: {value!r} (seconds, or e.g. 30s, 5m, 1h)")
        return sum(int(number) * _UNIT_S[unit]
                   for unit, number in found.groupdict().items() if number)

    @field_validator("redact_patterns", mode="before")
    @classmethod
    def _split_patterns(cls, value: Any) -> Any:
        """Regexes contain commas: a JSON list, or one pattern per line."""
        if not isinstance(value, str):
            return value
        return _json_list_or(value, value.splitlines(), "or one pattern per line")

    @field_validator("redact_patterns", mode="after")
    @classmethod
    def _valid_patterns(cls, value: list[str]) -> list[str]:
        compile_patterns(value)  # ValueError names the bad pattern
        return value

    @field_validator("database_url", mode="after")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("webhook_token", "api_token", "read_token", "slack_signing_secret",
                     mode="before")
    @classmethod
    def _strong_token(cls, value: Any) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or text == "":
            return None  # unset: `autofix serve` refuses to start without it
        if isinstance(text, str):
            if not text.strip():
                raise ValueError("must not be blank (whitespace only)")
            if len(text) < MIN_TOKEN_LENGTH:
                raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters, got "
                                 f"{len(text)}")
        return value

    @field_validator("http_allowed_hosts")
    @classmethod
    def _canonical_hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                parse_allowed_host(entry)
            except UnsafeUrl as exc:
                raise ValueError(str(exc)) from None
        return [entry.strip() for entry in value]

    @model_validator(mode="after")
    def _distinct_tokens(self) -> Settings:
        tokens = [(name, self.secret(name)) for name in
                  ("webhook_token", "api_token", "read_token", "slack_bot_token",
                   "slack_signing_secret")]
        for index, (name, value) in enumerate(tokens):
            for other, other_value in tokens[index + 1:]:
                if value and value == other_value:
                    raise ValueError(f"AUTOFIX_{name.upper()} and AUTOFIX_{other.upper()} "
                                     "must differ (one token must not open another's scope)")
        return self

    @model_validator(mode="after")
    def _tls_needs_both_files(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("AUTOFIX_TLS_CERT_FILE and AUTOFIX_TLS_KEY_FILE go together: "
                             "set both to serve HTTPS, or neither")
        return self

    @model_validator(mode="after")
    def _docker_hosts(self) -> Settings:
        if self.docker_hosts is None or not self.docker_hosts.strip():
            self._fleet = {LOCAL_HOST: DockerHostSpec.model_construct(
                url=self.docker_host, tls=None, timeout_s=None)}
            return self
        if self.docker_host is not None:
            raise ValueError("AUTOFIX_DOCKER_HOST and AUTOFIX_DOCKER_HOSTS: set one (the "
                             "first is the one host `local`), not both")
        self._fleet = parse_docker_hosts(self.docker_hosts)
        return self

    @model_validator(mode="after")
    def _per_host_cap(self) -> Settings:
        if self.max_runs_per_host is not None and \
                self.max_runs_per_host > self.max_concurrent_runs:
            raise ValueError(f"AUTOFIX_MAX_RUNS_PER_HOST ({self.max_runs_per_host}) is over "
                             f"AUTOFIX_MAX_CONCURRENT_RUNS ({self.max_concurrent_runs}): "
                             "one host could then hold every slot")
        return self

    def host_run_cap(self) -> int:
        """AUTOFIX_MAX_RUNS_PER_HOST, or half the global cap (at least 1)."""
        return self.max_runs_per_host or max(1, self.max_concurrent_runs // 2)

    def fleet_reread(self) -> Settings:
        """A copy whose AUTOFIX_DOCKER_HOSTS file is read again (each worker gunicorn starts
        on SIGHUP); ValueError, naming why, when it no longer validates."""
        copy = self.model_copy()
        if self.docker_hosts is not None and self.docker_hosts.strip():
            copy._fleet = parse_docker_hosts(self.docker_hosts)
        return copy

    def fleet(self) -> dict[str, DockerHostSpec]:
        """The Docker hosts by name: AUTOFIX_DOCKER_HOSTS, else `local` at
        AUTOFIX_DOCKER_HOST (its url None: the SDK's default)."""
        return dict(self._fleet)

    @model_validator(mode="after")
    def _slack_bot_needs_channel(self) -> Settings:
        if self.slack_bot_token is not None and not self.slack_channel:
            raise ValueError("AUTOFIX_SLACK_BOT_TOKEN needs AUTOFIX_SLACK_CHANNEL")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def allowed_http_hosts(self) -> list[AllowedHost]:
        return [parse_allowed_host(entry) for entry in self.http_allowed_hosts]

    def secret_file_warnings(self) -> list[str]:
        """One line per AUTOFIX_*_FILE secret that users other than its owner may read."""
        warnings = []
        for name in SECRET_FIELDS:
            variable = f"AUTOFIX_{name.upper()}_FILE"
            path = os.environ.get(variable)
            if not path:
                continue
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue
            if mode & (stat.S_IROTH | stat.S_IWOTH):
                warnings.append(f"{variable}: {path} is readable by every user (mode "
                                f"{stat.S_IMODE(mode):04o}); chmod 600 or 640 it")
        return warnings

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        return value if isinstance(value, str) else None

    def check_serving(self) -> list[str]:
        """Problems that must stop `autofix serve`; empty when it may start."""
        if self.allow_unauthenticated:
            return []
        return [f"AUTOFIX_{n.upper()} (or AUTOFIX_{n.upper()}_FILE) is required; set "
                "AUTOFIX_ALLOW_UNAUTHENTICATED=true to run without it"
                for n in ("webhook_token", "api_token") if not self.secret(n)]


_DRIVERS = {"postgres": "postgresql+psycopg2", "postgresql": "postgresql+psycopg2",
            "postgresql+psycopg2": "postgresql+psycopg2", "sqlite": "sqlite",
            "sqlite+pysqlite": "sqlite+pysqlite"}


def normalize_database_url(url: str) -> str:
    """postgres:// and postgresql:// mean psycopg2 (the driver autofix ships); any other
    scheme is refused here, with the fix, rather than failing deep inside SQLAlchemy."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        raise ValueError("not a database URL; use postgresql://user:password@host:5432/db "
                         "or sqlite:///path/to/autofix.db")
    driver = _DRIVERS.get(scheme.lower())
    if driver is None:
        raise ValueError(f"unsupported scheme {scheme!r}; use postgresql://user:password@"
                         "host:5432/db or sqlite:///path/to/autofix.db")
    if not driver.startswith("sqlite") and _unencoded_userinfo(rest):
        # Parsed as it stands, pieces of the password would become the host or the database
        # name, and every connection error would quote them: refused here, URL not shown.
        raise ValueError("the user or password holds an unencoded '@', '/', '#' or '?'; "
                         "percent-encode them (%40, %2F, %23, %3F)")
    return f"{driver}://{rest}"


def _unencoded_userinfo(rest: str) -> bool:
    """Whether the userinfo (up to the last '@') of `user:password@host/db` holds a
    character that ends it early for a URL parser."""
    at = rest.rfind("@")
    return at >= 0 and any(char in rest[:at] for char in "@/#?")


def _json_list_or(text: str, items: list[str], hint: str) -> Any:
    """A JSON list when `text` starts with `[`, else `items` stripped, blanks dropped."""
    if text.strip().startswith("["):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not a JSON list ({exc}); {hint}") from exc
    return [item.strip() for item in items if item.strip()]
