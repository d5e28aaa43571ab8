"""The pure dependency graph (receiver/domain/graph.py): order, kinds, cycles, the plan."""

from __future__ import annotations

import pytest

from receiver.domain.graph import (
    COMPOSE_DEPENDS_ON,
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    ContainerRow,
    CycleFound,
    Dependent,
    dependents_of,
    plan_chain,
)


def net(name: str, parent: str, **labels: str) -> ContainerRow:
    return ContainerRow(name, f"id-{name}", labels, f"container:{parent}")


def svc(name: str, depends: str = "", project: str = "p") -> ContainerRow:
    labels = {COMPOSE_PROJECT: project, COMPOSE_SERVICE: name}
    if depends:
        labels[COMPOSE_DEPENDS_ON] = depends
    return ContainerRow(name, f"id-{name}", labels, "host")


def names(found: list[Dependent]) -> list[str]:
    return [d.name for d in found]


def test_chain_in_topological_order_by_name_or_id() -> None:
    rows = [ContainerRow("vpn", "id-vpn"), net("c", "b"), net("b", "id-vpn"), net("a", "vpn")]
    found = dependents_of(rows, "vpn")
    assert names(found) == ["a", "b", "c"]
    assert found[2].depends_on == ["b"] and found[2].kind == "network"
    assert dependents_of(rows, "id-vpn") == found
    assert dependents_of(rows, "c") == []


def test_diamond_each_once_after_all_it_depends_on() -> None:
    rows = [svc("db"), svc("a", "db:service_started:true"), svc("b", "db:service_healthy:true"),
            svc("app", "a:service_started:true,b:service_started:true")]
    found = dependents_of(rows, "db")
    assert names(found) == ["a", "b", "app"]
    assert found[2].depends_on == ["a", "b"]
    assert all(d.kind == "compose" and d.restart_flag for d in found)


def test_cycle_reachable_from_the_target_is_named() -> None:
    rows = [svc("db", "app:service_started:true"), svc("app", "db:service_healthy:true"),
            svc("other")]
    with pytest.raises(CycleFound) as caught:
        dependents_of(rows, "db")
    assert str(caught.value) == "dependency cycle: db -> app -> db"
    assert dependents_of(rows, "other") == []


def test_cycle_below_the_target_is_refused_too() -> None:
    rows = [svc("root"), svc("x", "root:service_started:true,y:service_started:true"),
            svc("y", "x:service_started:true")]
    with pytest.raises(CycleFound, match="x -> y -> x"):
        dependents_of(rows, "root")


def test_compose_restart_flag_false_is_reported_and_left() -> None:
    rows = [svc("db"), svc("app", "db:service_healthy:false"), net("side", "app")]
    found = dependents_of(rows, "db")
    assert [(d.name, d.kind, d.restart_flag) for d in found] == [
        ("app", "compose", False), ("side", "network", False)]
    plan = plan_chain("db", found, "restart", lambda d: True, "autofix.enable")
    assert plan.restart == []
    assert [left.name for left in plan.left] == ["app", "side"]
    assert "restart: true" in plan.left[0].why
    assert "none it depends on is restarted" in plan.left[1].why


def test_unknown_references_and_other_projects_are_no_edges() -> None:
    rows = [svc("db"), svc("app", "nosuch:service_started:true,db:x:true", project="q"),
            net("lost", "nosuch"), net("self", "self")]
    assert dependents_of(rows, "db") == []
    assert dependents_of(rows, "nosuch") == []


def test_id_prefix_reference_resolves_when_unique() -> None:
    rows = [ContainerRow("parent", "abcdef12"), net("child", "abcd")]
    assert names(dependents_of(rows, "parent")) == ["child"]


def test_plan_leaves_unopted_and_their_dependents_and_honours_leave() -> None:
    rows = [ContainerRow("vpn", "id-vpn"), net("a", "vpn"), net("b", "a"), net("c", "vpn")]
    found = dependents_of(rows, "vpn")
    plan = plan_chain("vpn", found, "restart", lambda d: d.name != "a", "autofix.enable")
    assert names(plan.restart) == ["c"]
    assert [(left.name, "not opted in" in left.why) for left in plan.left] == [
        ("a", True), ("b", False)]
    leave = plan_chain("vpn", found, "leave", lambda d: True, "autofix.enable")
    assert leave.restart == [] and len(leave.left) == 3


def test_only_live_dependents_never_a_copy_a_rollback_set_aside() -> None:
    """Review of #31, finding 2: `?all=1` lists stopped containers too; a quarantined copy
    keeps its service's Compose labels, a one-off `compose run` container too."""
    rows = [svc("db"), svc("app", "db:service_started:true"),
            ContainerRow("app.autofix-quarantine-20261207T020000Z", "id-q",
                         svc("app", "db:service_started:true").labels, "host", "exited"),
            ContainerRow("app.autofix-rollback-failed-20261207T020000Z", "id-f",
                         svc("app", "db:service_started:true").labels, "host", "running"),
            ContainerRow("p-app-run-3f2a", "id-r", svc("app", "db:service_started:true").labels,
                         "host", "exited"),
            ContainerRow("web", "id-web", svc("web", "db:service_started:true").labels, "host",
                         "restarting"),
            ContainerRow("side", "id-side", {}, "container:db", "created")]
    assert names(dependents_of(rows, "db")) == ["app", "web"]
    stopped_target = [ContainerRow("db", "id-db", svc("db").labels, "host", "exited"),
                      *rows[1:]]
    assert names(dependents_of(stopped_target, "db")) == ["app", "web"]  # `start` restarts it


def test_the_docker_list_s_state_is_read_and_a_missing_one_is_not_live() -> None:
    from receiver.executor.docker_graph import container_rows

    listed = [{"Id": "a" * 64, "Names": ["/db"], "State": "running"},
              {"Id": "b" * 64, "Names": ["/app"], "HostConfig": {"NetworkMode": "container:db"}}]
    rows = container_rows(listed)
    assert [row.state for row in rows] == ["running", ""]
    assert dependents_of(rows, "db") == []


def test_only_edges_from_a_restarted_parent_decide() -> None:
    """Review of #31, finding 9: app's edge to db says restart: false; its edge to cache
    says true, but cache is not restarted: a restart of db leaves app."""
    rows = [svc("db"), svc("cache", "db:service_started:false"),
            svc("app", "db:service_started:false,cache:service_started:true")]
    found = dependents_of(rows, "db")
    assert [(d.name, d.restarts_with) for d in found] == [("cache", []), ("app", ["cache"])]
    plan = plan_chain("db", found, "restart", lambda d: True, "autofix.enable")
    assert plan.restart == []
    assert [(item.name, item.why) for item in plan.left] == [
        ("cache", "its compose depends_on on db does not say restart: true"),
        ("app", "its compose depends_on on db does not say restart: true")]
    # cache restarted with db: app's restart: true to cache now counts.
    rows[1] = svc("cache", "db:service_started:true")
    plan = plan_chain("db", dependents_of(rows, "db"), "restart", lambda d: True, "x")
    assert names(plan.restart) == ["cache", "app"]
