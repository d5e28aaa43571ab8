"""Grafana dashboards read as Grafana reads them, without Grafana: load the provisioned
dashboards, extract every panel query with its datasource, interpolate template variables
and expand the PostgreSQL macros as Grafana does, and make a read-only Grafana login.
Used by tests/test_dashboards.py (static checks) and tests/test_e2e_dashboards.py (live)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"
INIT_SCRIPT = GRAFANA / "postgres-init" / "10-grafana-reader.sh"
COMPOSE = REPO / "docker-compose.yml"

GRAFANA_ROLE = "autofix_grafana"
BUILTIN_GRAFANA_DS = "-- Grafana --"


# --- loading ------------------------------------------------------------------------------

def load_dashboards() -> dict[Path, dict[str, Any]]:
    return {path: json.loads(path.read_text()) for path in sorted(DASHBOARDS.rglob("*.json"))}


def dashboards_by_uid() -> dict[str, dict[str, Any]]:
    return {board["uid"]: board for board in load_dashboards().values()}


def all_panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())
    return {ds["uid"]: ds for ds in config["datasources"]}


def datasource_uid(ref: Any) -> str | None:
    if isinstance(ref, dict):
        uid = ref.get("uid")
        return str(uid) if uid is not None else None
    return str(ref) if ref is not None else None


DATASOURCE_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def datasource_variables(board: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board.get("templating", {}).get("list", [])
            if v.get("type") == "datasource"}


def resolve_datasource(board: Mapping[str, Any], uid: str | None) -> str:
    """The uid a reference means with the dashboard as shipped: a datasource variable
    (`${DS_PROMETHEUS}`) resolves to its default, which is the provisioned uid."""
    if uid is None:
        return ""
    match = DATASOURCE_VARIABLE.fullmatch(uid)
    if match is None:
        return uid
    variable = datasource_variables(board).get(match.group(1) or match.group(2) or "")
    return str(variable["current"]["value"]) if variable else uid


@dataclass(frozen=True)
class Query:
    """One query Grafana would send: a panel target, a template variable or an annotation."""

    dashboard: str  # uid
    where: str  # human-readable location, also the id for the may-be-empty lists
    datasource: str  # uid, datasource variables resolved to their (provisioned) default
    text: str  # PromQL, SQL, or a Grafana variable function like label_values(...)
    kind: str  # "panel", "variable" or "annotation"
    instant: bool = False

    @property
    def is_sql(self) -> bool:
        return self.datasource == "autofix-postgres"


def iter_queries(board: Mapping[str, Any]) -> Iterator[Query]:
    uid = board["uid"]

    def ds(*refs: Any) -> str:
        return resolve_datasource(board, next((u for u in map(datasource_uid, refs) if u), None))

    for panel in all_panels(board):
        for target in panel.get("targets", []):
            text = target.get("rawSql") or target.get("expr") or ""
            yield Query(uid, f"{uid} / {panel.get('title')} / {target.get('refId')}",
                        ds(target.get("datasource"), panel.get("datasource")), text, "panel",
                        bool(target.get("instant")) and not target.get("range"))
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            yield Query(uid, f"{uid} / variable {var['name']}", ds(var.get("datasource")),
                        text, "variable")
    for ann in board.get("annotations", {}).get("list", []):
        if ann.get("builtIn"):
            continue
        target = ann.get("target") or {}
        text = target.get("rawSql") or target.get("expr") or ann.get("rawQuery") or ""
        yield Query(uid, f"{uid} / annotation {ann.get('name')}",
                    ds(target.get("datasource"), ann.get("datasource")), text, "annotation")


def all_queries() -> list[Query]:
    return [query for board in load_dashboards().values() for query in iter_queries(board)]


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def link_urls(board: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, url) of dashboard links, panel links and field data links."""
    for link in board.get("links", []):
        if link.get("url"):
            yield "dashboard links", link["url"]
    for panel in all_panels(board):
        title = panel.get("title", "?")
        for link in panel.get("links", []):
            yield title, link.get("url", "")
        field_config = panel.get("fieldConfig", {})
        for link in field_config.get("defaults", {}).get("links", []):
            yield title, link.get("url", "")
        for override in field_config.get("overrides", []):
            for prop in override.get("properties", []):
                if prop.get("id") == "links":
                    for link in prop["value"]:
                        yield title, link.get("url", "")


# --- Grafana's variable interpolation -----------------------------------------------------

# public/app/features/variables/utils.ts variableRegex: $var, [[var:fmt]], ${var.path:fmt}
VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|{}\[\]/]")


def regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def sql_quote(value: str) -> str:
    """Grafana's PostgreSQL quoteLiteral: single quotes doubled, wrapped in quotes."""
    return "'" + value.replace("'", "''") + "'"


@dataclass
class Variables:
    """Values chosen for a dashboard's template variables, formatted the way Grafana does.

    `values[name]` is a list of selected values, or None for "All". Formatting follows
    the datasource: PostgreSQL quotes values of multi/include-all variables and joins them
    with commas; Prometheus regex-escapes them and joins with | inside (); a custom
    allValue is inserted unformatted (templateSrv skips formatting it).
    """

    definitions: dict[str, dict[str, Any]]
    values: dict[str, list[str] | None]
    builtins: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_dashboard(cls, board: Mapping[str, Any], values: Mapping[str, list[str] | None],
                      builtins: Mapping[str, str]) -> Variables:
        definitions = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
        chosen: dict[str, list[str] | None] = {}
        for name, definition in definitions.items():
            if name in values:
                chosen[name] = values[name]
            elif definition.get("includeAll"):
                chosen[name] = None
            else:
                current = definition.get("current", {}).get("value", "")
                chosen[name] = current if isinstance(current, list) else [str(current)]
        return cls(definitions, chosen, dict(builtins))

    def _all_values(self, name: str) -> list[str]:
        definition = self.definitions[name]
        if definition.get("type") == "custom":
            return [v.strip() for v in str(definition["query"]).split(",")]
        raise KeyError(f"'All' of query variable {name} needs a custom allValue or values")

    def format(self, name: str, fmt: str | None, datasource: str) -> str:
        definition = self.definitions[name]
        selected = self.values[name]
        if selected is None:  # All
            if definition.get("allValue") and fmt not in ("text", "percentencode"):
                return str(definition["allValue"])
            selected = self._all_values(name)
        multi = bool(definition.get("multi") or definition.get("includeAll"))
        if fmt == "regex":
            escaped = [regex_escape(v) for v in selected]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        if fmt in ("raw", "text"):
            return ",".join(selected)
        if fmt == "csv":
            return ",".join(selected)
        if fmt == "sqlstring":
            return ",".join(sql_quote(v) for v in selected)
        if fmt is not None:
            raise ValueError(f"format {fmt!r} of ${name} is not supported by this test")
        if datasource == "autofix-postgres":
            if len(selected) == 1 and not multi:
                return selected[0]
            return ",".join(sql_quote(v) for v in selected)
        if datasource == "prometheus":
            if len(selected) == 1 and not multi:
                return selected[0]
            escaped = [regex_escape(v) for v in selected]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        return ",".join(selected)

    def interpolate(self, text: str, datasource: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2) or match.group(4)
            fmt = match.group(3) or match.group(6)
            if name in self.builtins:
                return self.builtins[name]
            if name in self.definitions:
                return self.format(name, fmt, datasource)
            return match.group(0)  # a macro ($__timeFilter...) or not a variable at all

        return VARIABLE.sub(replace, text)


def variable_names_used(text: str) -> set[str]:
    return {m.group(1) or m.group(2) or m.group(4) for m in VARIABLE.finditer(text)}


# --- Grafana's PostgreSQL macros ----------------------------------------------------------

# pkg/tsdb/postgres/macros.go: the same pattern, so arguments cannot contain ')'.
MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")
_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)$")
_INTERVAL_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
               "y": 31536000}


def parse_interval(text: str) -> float:
    match = _INTERVAL.match(text.strip().strip("'"))
    if match is None:
        raise ValueError(f"error parsing interval {text}")
    return float(match.group(1)) * _INTERVAL_S[match.group(2)]


def _go_number(seconds: float) -> str:
    """Go's %v of a float64: 300 not 300.0, 0.5 stays 0.5."""
    return str(int(seconds)) if seconds == int(seconds) else repr(seconds)


def rfc3339(moment: datetime) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += ("." + f"{moment.microsecond:06d}").rstrip("0")
    return text + "Z"


def expand_sql_macros(sql: str, start: datetime, end: datetime, interval_s: float) -> str:
    """Grafana 9.5/10's PostgreSQL macro engine (sqleng.Interpolate + postgres macros.go).

    $__interval/$__interval_ms and $__unixEpochFrom/To() are replaced first, as
    sqleng.Interpolate does; then every $__macro(args). TimescaleDB is off (as provisioned).
    Fill modes (a third $__timeGroup argument) only change how Grafana post-processes rows.
    """
    sql = sql.replace("$__interval_ms", str(int(interval_s * 1000)))
    sql = sql.replace("$__interval", _interval_text(interval_s))
    sql = sql.replace("$__unixEpochFrom()", str(int(start.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(int(end.timestamp())))

    def group(column: str, interval: str) -> str:
        seconds = _go_number(parse_interval(interval))
        return f"floor(extract(epoch from {column})/{seconds})*{seconds}"

    def epoch_group(column: str, interval: str) -> str:
        seconds = _go_number(parse_interval(interval))
        return f"floor({column}/{seconds})*{seconds}"

    def evaluate(name: str, args: list[str]) -> str:
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339(start)}' AND '{rfc3339(end)}'"
        if name == "__timeFrom":
            return f"'{rfc3339(start)}'"
        if name == "__timeTo":
            return f"'{rfc3339(end)}'"
        if name == "__timeGroup":
            return group(args[0], args[1])
        if name == "__timeGroupAlias":
            return group(args[0], args[1]) + ' AS "time"'
        if name == "__unixEpochFilter":
            return (f"{args[0]} >= {int(start.timestamp())} AND "
                    f"{args[0]} <= {int(end.timestamp())}")
        if name == "__unixEpochNanoFilter":
            return (f"{args[0]} >= {int(start.timestamp() * 1e9)} AND "
                    f"{args[0]} <= {int(end.timestamp() * 1e9)}")
        if name == "__unixEpochNanoFrom":
            return str(int(start.timestamp() * 1e9))
        if name == "__unixEpochNanoTo":
            return str(int(end.timestamp() * 1e9))
        if name == "__unixEpochGroup":
            return epoch_group(args[0], args[1])
        if name == "__unixEpochGroupAlias":
            return epoch_group(args[0], args[1]) + ' AS "time"'
        raise ValueError(f"Unknown macro {name}")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        args = [arg.strip(" ") for arg in match.group(2).split(",")]
        if name == "__timeGroup":
            # Grafana: "$__timeGroup(...)," is the pre-5.3 form that meant ...Alias.
            after = match.end()
            if after < len(match.string) and match.string[after] == ",":
                name = "__timeGroupAlias"
        if name in ("__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter",
                    "__unixEpochNanoFilter") and not args[0]:
            raise ValueError(f"missing time column argument for macro {name}")
        if name in ("__timeGroup", "__timeGroupAlias", "__unixEpochGroup",
                    "__unixEpochGroupAlias") and len(args) < 2:
            raise ValueError(f"macro {name} needs time column and interval")
        return evaluate(name, args)

    return MACRO.sub(replace, sql)


def _interval_text(seconds: float) -> str:
    """How Grafana writes an interval ("30s", "1m", "500ms")."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds)}s"


@dataclass(frozen=True)
class TimeRange:
    """A dashboard time range and the interval Grafana would pick for it."""

    start: datetime
    end: datetime
    scrape_interval_s: float = 5.0
    max_data_points: int = 1000

    @property
    def range_s(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def interval_s(self) -> float:
        # Grafana: range / maxDataPoints, never below the datasource's timeInterval.
        return max(round(self.range_s / self.max_data_points), self.scrape_interval_s, 1.0)

    @property
    def rate_interval_s(self) -> float:
        # Grafana: max($__interval + scrape interval, 4 * scrape interval).
        return max(self.interval_s + self.scrape_interval_s, 4 * self.scrape_interval_s)

    def builtins(self) -> dict[str, str]:
        return {
            "__interval": _interval_text(self.interval_s),
            "__interval_ms": str(int(self.interval_s * 1000)),
            "__rate_interval": _interval_text(self.rate_interval_s),
            "__range": f"{round(self.range_s)}s",
            "__range_s": str(round(self.range_s)),
            "__range_ms": str(round(self.range_s * 1000)),
        }


def create_grafana_login(admin_dsn: str) -> str:
    """A LOGIN user in the Grafana role, made the way docs/dashboards.md tells operators."""
    import psycopg2

    name = f"grafana_t_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {name} LOGIN IN ROLE {GRAFANA_ROLE}")
        cur.execute(f"ALTER ROLE {name} SET statement_timeout = '30s'")
    conn.close()
    return name


def drop_login(admin_dsn: str, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP ROLE IF EXISTS {name}")
    conn.close()
