"""Who depends on a container, and in which order to restart them after it (pure).

Two kinds of edge, both read from one container list:
- `network`: the child runs with `--network container:<parent>` (compose
  `network_mode: service:<parent>`): it shares the parent's network namespace, which a
  restart of the parent replaces, so the child is cut off until it restarts too.
- `compose`: the Compose label `com.docker.compose.depends_on`
  (`svc:condition:restart,...`) names services of the same project; `restart` true is
  Compose's own "restart me when it restarts".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from receiver.domain.set_aside import is_set_aside

__all__ = ["COMPOSE_DEPENDS_ON", "COMPOSE_PROJECT", "COMPOSE_SERVICE", "DEPENDENTS_POLICIES",
           "LIVE_STATES", "RESTARTING_ACTIONS", "ChainPlan", "ContainerRow", "CycleFound",
           "Dependent", "Edge", "Left", "dependents_of", "edges_of", "plan_chain"]

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_DEPENDS_ON = "com.docker.compose.depends_on"
DEPENDENTS_POLICIES = ("restart", "leave")
# A step that replaces the target's processes (and so its network namespace): after a run
# with one of these, the target's dependents are restarted in order.
RESTARTING_ACTIONS = frozenset({"restart", "start"})

Kind = Literal["network", "compose"]


# Only a container that runs (or is being restarted by Docker) when the list is taken is a
# dependent: a stopped one (a one-off `compose run`, an exited container) is not restarted.
LIVE_STATES = frozenset({"running", "restarting"})


@dataclass(frozen=True)
class ContainerRow:
    """What one item of `GET /containers/json?all=1` says about a container (`state`: its
    `State`, e.g. running, exited)."""

    name: str
    id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    network_mode: str = ""
    state: str = "running"


@dataclass(frozen=True)
class Edge:
    parent: str  # container name
    child: str
    kind: Kind
    restart: bool  # compose: the depends_on `restart` flag; network: always True


@dataclass(frozen=True)
class Dependent:
    """One container to consider after the target. `kind` is `network` when it shares the
    namespace of one it depends on in the set, else `compose`; `restart_flag` is true when
    one of its compose edges says `restart: true`; `depends_on` names the containers of the
    set (the target included) it depends on, `restarts_with` those of them whose restart
    restarts it (a shared namespace, or a depends_on saying `restart: true`). `labels` are
    its own (the opt-in label)."""

    name: str
    id: str
    kind: Kind
    restart_flag: bool
    depends_on: list[str]
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)
    restarts_with: list[str] = field(default_factory=list)


class CycleFound(ValueError):
    """A cycle is reachable from the target; `cycle` lists it, first name repeated last."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(cycle))


def _compose_depends_on(value: str) -> list[tuple[str, bool]]:
    """`db:service_healthy:true,cache:service_started` → [(db, True), (cache, False)]."""
    found = []
    for item in value.split(","):
        parts = item.strip().split(":")
        if parts and parts[0]:
            found.append((parts[0], len(parts) > 2 and parts[2].strip().lower() == "true"))
    return found


def _resolver(rows: Sequence[ContainerRow]) -> Callable[[str], ContainerRow | None]:
    by_id = {row.id: row for row in rows}
    by_name = {row.name: row for row in rows}

    def resolve(reference: str) -> ContainerRow | None:
        reference = reference.lstrip("/")
        found = by_id.get(reference) or by_name.get(reference)
        if found is None and reference:
            prefixed = [row for row in rows if row.id.startswith(reference)]
            found = prefixed[0] if len(prefixed) == 1 else None
        return found

    return resolve


def edges_of(rows: Sequence[ContainerRow]) -> list[Edge]:
    """Every edge the rows describe; a reference to no listed container is no edge."""
    resolve = _resolver(rows)
    services: dict[tuple[str, str], list[ContainerRow]] = {}
    for row in rows:
        project, service = row.labels.get(COMPOSE_PROJECT), row.labels.get(COMPOSE_SERVICE)
        if project and service:
            services.setdefault((project, service), []).append(row)
    edges: list[Edge] = []
    for row in rows:
        mode, _, reference = row.network_mode.partition(":")
        parent = resolve(reference) if mode == "container" else None
        if parent is not None and parent.name != row.name:
            edges.append(Edge(parent.name, row.name, "network", True))
        project = row.labels.get(COMPOSE_PROJECT)
        for service, restart in _compose_depends_on(row.labels.get(COMPOSE_DEPENDS_ON, "")):
            for parent in services.get((project or "", service), []) if project else []:
                if parent.name != row.name:
                    edges.append(Edge(parent.name, row.name, "compose", restart))
    return edges


def _find_cycle(start: str, children: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle reachable from `start` (iterative DFS, three colours), or None."""
    colour: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []
    stack: list[tuple[str, int]] = [(start, 0)]
    while stack:
        node, index = stack.pop()
        if index == 0:
            colour[node] = 1
            path.append(node)
        nexts = children.get(node, [])
        if index < len(nexts):
            stack.append((node, index + 1))
            child = nexts[index]
            if colour.get(child) == 1:
                return [*path[path.index(child):], child]
            if child not in colour:
                stack.append((child, 0))
        else:
            colour[node] = 2
            path.pop()
    return None


def dependents_of(rows: Sequence[ContainerRow], target: str) -> list[Dependent]:
    """The target's live descendants (`target` is its name or ID), each once, in topological
    order (a dependent after everything it depends on within the set; ties by name).
    Raises CycleFound for a cycle reachable from the target; [] for an unknown target."""
    root = _resolver(rows)(target)
    if root is None:
        return []
    # The target whatever its state (a `start` step starts it); the others only when live,
    # and never a copy a rollback set aside (it keeps the Compose labels of its service).
    rows = [row for row in rows if row is root
            or (row.state in LIVE_STATES and not is_set_aside(row.name))]
    edges = edges_of(rows)
    children: dict[str, list[str]] = {}
    for edge in edges:
        if edge.child not in children.setdefault(edge.parent, []):
            children[edge.parent].append(edge.child)
    for names in children.values():
        names.sort()
    cycle = _find_cycle(root.name, children)
    if cycle is not None:
        raise CycleFound(cycle)
    reached, todo = {root.name}, [root.name]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in reached:
                reached.add(child)
                todo.append(child)
    inside = [edge for edge in edges if edge.parent in reached and edge.child in reached]
    parents: dict[str, set[str]] = {name: set() for name in reached}
    for edge in inside:
        parents[edge.child].add(edge.parent)
    order: list[str] = []
    ready = sorted(name for name, found in parents.items() if not found)
    waiting = {name: set(found) for name, found in parents.items()}
    while ready:
        name = ready.pop(0)
        order.append(name)
        for child in children.get(name, []):
            if child in waiting and name in waiting[child]:
                waiting[child].discard(name)
                if not waiting[child]:
                    ready.append(child)
                    ready.sort()
    by_name = {row.name: row for row in rows}
    found: list[Dependent] = []
    for name in order:
        if name == root.name:
            continue
        mine = [edge for edge in inside if edge.child == name]
        kind: Kind = "network" if any(edge.kind == "network" for edge in mine) else "compose"
        found.append(Dependent(
            name=name, id=by_name[name].id, kind=kind,
            restart_flag=any(edge.kind == "compose" and edge.restart for edge in mine),
            depends_on=sorted(parents[name]), labels=dict(by_name[name].labels),
            restarts_with=sorted({edge.parent for edge in mine if edge.restart})))
    return found


@dataclass(frozen=True)
class Left:
    """A dependent not restarted, and why; `needs_human`: it is likely cut off by the
    restart, yet autofix may not touch it (not opted in)."""

    name: str
    why: str
    needs_human: bool = False


@dataclass(frozen=True)
class ChainPlan:
    restart: list[Dependent]
    left: list[Left]


def plan_chain(target: str, dependents: Sequence[Dependent], policy: str,
               opted_in: Callable[[Dependent], bool], opt_in_label: str) -> ChainPlan:
    """Which dependents a restart of `target` (its name) restarts, in order: under policy
    `restart`, one that shares the namespace of a restarted container, or whose compose
    depends_on on a restarted one says `restart: true` (an edge to one not restarted does
    not count); never one that is not opted in (nor, through it, its own dependents).
    Policy `leave` restarts none."""
    restarted = {target}
    restart: list[Dependent] = []
    left: list[Left] = []
    for dependent in dependents:
        upstream = [name for name in dependent.depends_on if name in restarted]
        if policy == "leave":
            left.append(Left(dependent.name, "the playbook says dependents: leave"))
        elif not upstream:
            left.append(Left(dependent.name, "none it depends on is restarted ("
                             + ", ".join(dependent.depends_on) + ")"))
        elif not any(name in restarted for name in dependent.restarts_with):
            left.append(Left(dependent.name, "its compose depends_on on "
                             + ", ".join(upstream) + " does not say restart: true"))
        elif not opted_in(dependent):
            left.append(Left(dependent.name, f"not opted in (lacks the label "
                             f"{opt_in_label}=true); its own dependents are left too", True))
        else:
            restart.append(dependent)
            restarted.add(dependent.name)
    return ChainPlan(restart, left)
