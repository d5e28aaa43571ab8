"""Day-to-day operator commands over the HTTP API: incidents, runs, approve, deny, pause,
resume, maintenance, budgets. Each prints one line per row (or one line for a change),
`--json` prints the API's JSON for scripts; an error is one line on stderr and exit code 1
(ApiClientError)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from receiver.ops.api_client import DEFAULT_URL, ApiClient, ApiClientError, resolve_token

__all__ = ["add_commands"]

_RUN_STATUSES = ("queued", "awaiting_approval", "running", "succeeded", "failed", "skipped",
                 "interrupted", "denied", "expired")
_INCIDENT_STATUSES = ("open", "remediating", "escalated", "acknowledged", "closed",
                      "resolved")
_PAGE = 500  # the API's largest page


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(args.url, resolve_token(args.token, args.token_file), args.cacert)


def _actor(args: argparse.Namespace) -> str:
    if args.actor:
        return str(args.actor)
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return f"uid {os.getuid()}"


def _list(client: ApiClient, path: str, params: dict[str, Any], limit: int
          ) -> list[dict[str, Any]]:
    """Up to `limit` items, following next_offset across pages."""
    items: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None and len(items) < limit:
        page = client.get(path, {**params, "offset": offset,
                                 "limit": min(_PAGE, limit - len(items))})
        items.extend(page["items"])
        offset = page["next_offset"]
    return items


def _print_rows(args: argparse.Namespace, rows: list[dict[str, Any]],
                line: Callable[[dict[str, Any]], str], empty: str) -> int:
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(empty, file=sys.stderr)
    for row in [] if args.json else rows:
        print(line(row))
    return 0


def _incident_line(row: dict[str, Any]) -> str:
    return (f"{row['id']:>6}  {row['status']:<12}  {row['alertname'] or '-'}  "
            f"{row['target'] or '-'}  {row['playbook'] or '-'}  since {row['first_seen']}")


def _run_line(row: dict[str, Any]) -> str:
    text = (f"{row['id']:>6}  {row['status']:<17}  {row['playbook']}  {row['target'] or '-'}"
            f"  queued {row['queued_at']}")
    if row["status"] == "awaiting_approval" and row["approval_due_at"]:
        text += f"  due {row['approval_due_at']}"
    if row["dry_run"]:
        text += "  dry_run"
    if row["reason"]:
        text += f"  reason: {row['reason']}"
    return text


def cmd_incidents(args: argparse.Namespace) -> int:
    rows = _list(_client(args), "/api/v1/incidents",
                 {"status": args.status, "alertname": args.alertname, "target": args.target},
                 args.limit)
    return _print_rows(args, rows, _incident_line, "no incidents")


def cmd_runs(args: argparse.Namespace) -> int:
    status = "awaiting_approval" if args.awaiting else args.status
    rows = _list(_client(args), "/api/v1/runs",
                 {"status": status, "playbook": args.playbook, "target": args.target},
                 args.limit)
    return _print_rows(args, rows, _run_line,
                       "no runs awaiting approval" if args.awaiting else "no runs")


def _decide(args: argparse.Namespace, verdict: str) -> int:
    run = _client(args).post(f"/api/v1/runs/{args.run}/{verdict}",
                             {"actor": _actor(args), "comment": args.comment})
    if args.json:
        print(json.dumps(run, indent=2))
    else:
        print(f"run {run['id']} {run['decision'] or verdict}: now {run['status']} "
              f"({run['playbook']} on {run['target'] or '-'})")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    return _decide(args, "approve")


def cmd_deny(args: argparse.Namespace) -> int:
    return _decide(args, "deny")


def _print_pause(args: argparse.Namespace, state: dict[str, Any]) -> int:
    if args.json:
        print(json.dumps(state, indent=2))
    elif state["paused"]:
        until = f" until {state['until']}" if state["until"] else " until resumed"
        print(f"paused since {state['since']}{until} by {state['actor']}: {state['reason']}")
    else:
        print("automation is running (not paused)")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.show:
        return _print_pause(args, client.get("/api/v1/pause"))
    if not args.reason:
        raise ApiClientError("autofix pause needs --reason (or --show to see the state)")
    body: dict[str, Any] = {"actor": _actor(args), "reason": args.reason}
    if args.until:
        body["until"] = args.until
    return _print_pause(args, client.post("/api/v1/pause", body))


def cmd_resume(args: argparse.Namespace) -> int:
    return _print_pause(args, _client(args).post(
        "/api/v1/resume", {"actor": _actor(args), "reason": args.reason}))


def _window_line(row: dict[str, Any]) -> str:
    ended = f"  ended {row['ended_at']} by {row['ended_by']}" if row["ended_at"] else ""
    return (f"{row['id']:>6}  {row['state']:<9}  {row['starts_at']} to {row['ends_at']}  "
            f"{' '.join(row['matchers'])}  by {row['created_by']}: {row['reason']}{ended}")


def _print_window(args: argparse.Namespace, row: dict[str, Any]) -> int:
    print(json.dumps(row, indent=2) if args.json else _window_line(row))
    return 0


def cmd_maintenance(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.action == "list":
        rows = client.get("/api/v1/maintenance",
                          {"ended": "true" if args.ended else None})["items"]
        return _print_rows(args, rows, _window_line, "no maintenance window in force or "
                           "scheduled" if not args.ended else "no maintenance windows")
    if args.action == "end":
        if not args.id:
            raise ApiClientError("autofix maintenance end needs the window id "
                                 "(autofix maintenance list)")
        return _print_window(args, client.post(f"/api/v1/maintenance/{args.id}/end", {
            "actor": _actor(args), "reason": args.reason or ""}))
    if not args.match or not args.ends_at or not args.reason:
        raise ApiClientError("autofix maintenance start needs --match (one or more), "
                             "--ends-at and --reason")
    body: dict[str, Any] = {"matchers": args.match, "ends_at": args.ends_at,
                            "actor": _actor(args), "reason": args.reason}
    if args.starts_at:
        body["starts_at"] = args.starts_at
    return _print_window(args, client.post("/api/v1/maintenance", body))


def _budget_lines(state: dict[str, Any]) -> list[str]:
    lines = []
    for row in state["budgets"]:
        frees = f"  frees at {row['frees_at']}" if row["frees_at"] else ""
        lines.append(f"budget  {row['playbook']}  {row['scope']} {row['key'] or '-'}  "
                     f"{row['used']}/{row['limit']} per {row['per_s']:g}s{frees}")
    guard = state["host_storm"]
    if not guard["enabled"]:
        lines.append("host storm guard off (AUTOFIX_HOST_STORM_TARGETS=0)")
    for host in guard["hosts"]:
        lines.append(f"host    {host['host']}  {host['targets']}/{guard['targets']} targets "
                     f"per {guard['window_s']:g}s  frees at {host['frees_at']}")
    for storm in state["host_storms"]:
        lines.append(f"STORM   {storm['host']}  since {storm['started_at']} until "
                     f"{storm['until']}  incident {storm['incident_id']}  left as they are: "
                     f"{', '.join(storm['skipped'])}")
    return lines


def cmd_budgets(args: argparse.Namespace) -> int:
    state = _client(args).get("/api/v1/budgets")
    if args.json:
        print(json.dumps(state, indent=2))
        return 0
    lines = _budget_lines(state)
    for line in lines:
        print(line)
    if not lines:
        print("no budgets and no host acted on in the storm window", file=sys.stderr)
    return 0


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("AUTOFIX_URL") or DEFAULT_URL,
                        help="the receiver (default: AUTOFIX_URL, else %(default)s)")
    common.add_argument("--token", help="API token (default: AUTOFIX_API_TOKEN)")
    common.add_argument("--token-file", metavar="PATH",
                        help="read the token from a file (default: AUTOFIX_API_TOKEN_FILE)")
    common.add_argument("--cacert", metavar="PEM",
                        help="CA certificate(s) to verify an https URL with")
    common.add_argument("--json", action="store_true", help="print the API's JSON")
    return common


def add_commands(sub: Any) -> None:
    """The operator commands, added to `autofix`'s subparsers."""
    common = _connection_options()
    incidents = sub.add_parser("incidents", parents=[common],
                               help="list incidents, newest first")
    incidents.add_argument("--status", choices=_INCIDENT_STATUSES)
    incidents.add_argument("--alertname")
    incidents.add_argument("--target")
    incidents.add_argument("--limit", type=int, default=50, help="most rows shown")
    incidents.set_defaults(func=cmd_incidents)

    runs = sub.add_parser("runs", parents=[common],
                          help="list runs, newest first")
    runs.add_argument("--awaiting", action="store_true",
                      help="only runs awaiting approval (--status awaiting_approval)")
    runs.add_argument("--status", choices=_RUN_STATUSES)
    runs.add_argument("--playbook")
    runs.add_argument("--target")
    runs.add_argument("--limit", type=int, default=50, help="most rows shown")
    runs.set_defaults(func=cmd_runs)

    for name, func, text in (("approve", cmd_approve, "approve a run awaiting approval"),
                             ("deny", cmd_deny, "deny a run awaiting approval")):
        decide = sub.add_parser(name, parents=[common], help=text)
        decide.add_argument("run", help="the run id (autofix runs --awaiting)")
        decide.add_argument("--comment", default="", help="recorded with the decision")
        decide.add_argument("--actor", help="who decides (default: your user name)")
        decide.set_defaults(func=func)

    pause = sub.add_parser("pause", parents=[common],
                           help="pause all automation (the kill switch), or --show it")
    pause.add_argument("--reason", help="why (required to pause)")
    pause.add_argument("--until", help="RFC 3339 time with an offset when it ends by itself")
    pause.add_argument("--actor", help="who pauses (default: your user name)")
    pause.add_argument("--show", action="store_true", help="only show whether paused")
    pause.set_defaults(func=cmd_pause)

    budgets = sub.add_parser("budgets", parents=[common],
                             help="action budgets used, the host storm guard, storms in force")
    budgets.set_defaults(func=cmd_budgets)

    resume = sub.add_parser("resume", parents=[common],
                            help="resume automation after a pause")
    resume.add_argument("--reason", default="", help="recorded with the resume")
    resume.add_argument("--actor", help="who resumes (default: your user name)")
    resume.set_defaults(func=cmd_resume)

    maintenance = sub.add_parser(
        "maintenance", parents=[common],
        help="list, start or end maintenance windows (matching runs skip `maintenance`)")
    maintenance.add_argument("action", choices=("list", "start", "end"))
    maintenance.add_argument("id", nargs="?", help="the window to end (end only)")
    maintenance.add_argument("--match", action="append", metavar="MATCHER",
                             help='an Alertmanager matcher, e.g. \'container=~"shop-.*"\' '
                             "(repeat: all must hold; start only)")
    maintenance.add_argument("--starts-at", help="RFC 3339 with an offset (default: now)")
    maintenance.add_argument("--ends-at", help="RFC 3339 with an offset (start only)")
    maintenance.add_argument("--reason", help="why (required to start)")
    maintenance.add_argument("--actor", help="who (default: your user name)")
    maintenance.add_argument("--ended", action="store_true",
                             help="list: include windows that are over")
    maintenance.set_defaults(func=cmd_maintenance)
