"""Reference docs generated from the code: the settings class and the action registry.

`autofix docs --write` refreshes the marked sections of README.md;
tests/test_docs.py fails when they drift from the code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from receiver.actions.builtin import build_registry
from receiver.config.settings import SECRET_FIELDS, Settings

__all__ = ["SECTIONS", "refresh", "render_actions", "render_settings"]


def _type_name(annotation: Any) -> str:
    text = str(annotation) if getattr(annotation, "__args__", None) else \
        getattr(annotation, "__name__", str(annotation))
    text = (text.replace("typing.", "").replace("pydantic.types.", "")
            .replace("pathlib.", "").replace("NoneType", "None"))
    return text.replace(" | ", " or ").replace("|", "or")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return f"`{field.default_factory()}`"  # type: ignore[call-arg]
    if field.default is None:
        return "unset"
    return f"`{field.default}`"


def render_settings() -> str:
    lines = ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        variable = f"`AUTOFIX_{name.upper()}`"
        if name in SECRET_FIELDS:
            variable += f" (or `AUTOFIX_{name.upper()}_FILE`)"
        default = _default(field)
        if "DEFAULT_PLAYBOOKS" in str(field.default) or name == "playbooks":
            default = "`receiver/playbooks.yml`"
        lines.append(f"| {variable} | {_type_name(field.annotation)} | {default} | "
                     f"{field.description or ''} |")
    return "\n".join(lines)


def _params_table(model: type[BaseModel]) -> list[str]:
    if not model.model_fields:
        return ["No parameters."]
    lines = ["| Parameter | Type | Default | Meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        default = "required" if field.is_required() else _default(field)
        lines.append(f"| `{name}` | {_type_name(field.annotation)} | {default} | "
                     f"{field.description or ''} |")
    return lines


def render_actions() -> str:
    out: list[str] = []
    for spec in build_registry().specs():
        if spec.mutating:
            kind = "changes the container (guarded, counted by the breaker)"
        elif spec.endpoint:
            kind = ("does not change the container; a playbook of only such steps is guarded "
                    "per URL host (cooldown, breaker)")
        else:
            kind = "does not change the container"
        out += [f"#### `{spec.name}`", "", f"{spec.summary} *({kind})*", "",
                *_params_table(spec.params), ""]
    return "\n".join(out).rstrip()


SECTIONS = {"settings": render_settings, "actions": render_actions}


def _literal(replacement: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: replacement


def refresh(text: str) -> str:
    """The text with every `<!-- reference:NAME -->` section regenerated."""
    for name, render in SECTIONS.items():
        start, end = f"<!-- reference:{name} -->", f"<!-- /reference:{name} -->"
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
        # A plain string replacement would interpret backslashes in the generated text.
        text = pattern.sub(_literal(f"{start}\n{render()}\n{end}"), text)
    return text


def write(path: Path) -> bool:
    """Refresh the file in place; True when it changed."""
    before = path.read_text()
    after = refresh(before)
    if after != before:
        path.write_text(after)
    return after != before
