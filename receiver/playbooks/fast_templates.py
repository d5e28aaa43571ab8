"""Plain-Python evaluation of the target templates playbooks actually use.

A storm renders one target template per alert, and Jinja's per-render cost (a new context,
sandbox checks on every attribute) was a sixth of acknowledging 10,000 alerts. Templates
made only of label/annotation lookups, `.get(...)`, `or` and literal text are compiled
here into a closure that gives Jinja's exact output and error; anything else returns None
and goes through the sandbox as before. tests/test_fast_templates.py checks the two agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jinja2 import Environment, nodes

__all__ = ["FastTemplate", "MissingValue", "compile_fast"]

Expression = Callable[[dict[str, Any]], Any]
FastTemplate = Callable[[dict[str, Any]], str]

_MAPPINGS = frozenset({"labels", "annotations"})
_NAMES = _MAPPINGS | {"status"}


class MissingValue(LookupError):
    """A lookup Jinja's StrictUndefined would refuse; the text is Jinja's own message."""


class _Unsupported(Exception):
    pass


def compile_fast(environment: Environment, template: str) -> FastTemplate | None:
    """A closure rendering `template` exactly as Jinja would, or None if it is not simple."""
    try:
        tree = environment.parse(template)
        if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
            return None
        parts = [_part(node) for node in tree.body[0].nodes]
    except Exception:  # a syntax error, or something this does not handle: Jinja decides
        return None

    def render(context: dict[str, Any]) -> str:
        return "".join(part(context) for part in parts)

    return render


def _part(node: nodes.Node) -> Callable[[dict[str, Any]], str]:
    if isinstance(node, nodes.TemplateData):
        text = node.data
        return lambda context: text
    expression = _expression(node)
    return lambda context: str(expression(context))


def _lookup(mapping_name: str, key: str) -> Expression:
    if hasattr(dict, key):  # Jinja would find the dict method (labels.items), not the label
        raise _Unsupported(key)

    def lookup(context: dict[str, Any]) -> Any:
        try:
            return context[mapping_name][key]
        except KeyError:
            raise MissingValue(f"'dict object' has no attribute '{key}'") from None

    return lookup


def _expression(node: nodes.Node) -> Expression:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        value = node.value
        return lambda context: value
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name == "status":
        return lambda context: context["status"]
    if isinstance(node, nodes.Getattr) and _is_mapping(node.node):
        return _lookup(node.node.name, node.attr)  # type: ignore[attr-defined]
    if (isinstance(node, nodes.Getitem) and _is_mapping(node.node)
            and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str)):
        return _lookup(node.node.name, node.arg.value)  # type: ignore[attr-defined]
    if isinstance(node, nodes.Call):
        return _get_call(node)
    if isinstance(node, nodes.Or):
        left, right = _expression(node.left), _expression(node.right)
        return lambda context: left(context) or right(context)
    raise _Unsupported(type(node).__name__)


def _get_call(node: nodes.Call) -> Expression:
    """`labels.get('name')` or `labels.get('name', 'default')`."""
    function = node.node
    if (not isinstance(function, nodes.Getattr) or function.attr != "get"
            or not _is_mapping(function.node) or node.kwargs or node.dyn_args
            or node.dyn_kwargs or not 1 <= len(node.args) <= 2
            or not all(isinstance(a, nodes.Const) and isinstance(a.value, str | None)
                       for a in node.args)):
        raise _Unsupported("call")
    mapping_name = function.node.name  # type: ignore[attr-defined]
    key = node.args[0].value  # type: ignore[attr-defined]
    default = node.args[1].value if len(node.args) == 2 else None  # type: ignore[attr-defined]
    return lambda context: context[mapping_name].get(key, default)


def _is_mapping(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.ctx == "load" and node.name in _MAPPINGS
