"""Sandboxed templates over an alert's labels and annotations.

Label values are data, never templates: a value containing "{{ ... }}" is inserted
literally, because only the playbook's own strings are compiled.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from receiver.playbooks.fast_templates import FastTemplate, MissingValue, compile_fast

__all__ = ["TemplateRenderError", "TemplateRenderer"]


class TemplateRenderError(ValueError):
    """A template failed to compile or render (e.g. it names a missing label)."""


_COMPILED_KEPT = 1024  # templates come from playbooks: a few dozen in practice


class TemplateRenderer:
    def __init__(self) -> None:
        self._env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        # Compiling costs ~1 ms; a storm renders the same target template thousands of times.
        self._compiled: dict[str, Template] = {}
        # The simple forms (a label, `.get`, `or`) skip Jinja: same output, a tenth the cost.
        self._fast: dict[str, FastTemplate | None] = {}

    def _template(self, template: str) -> Template:
        compiled = self._compiled.get(template)
        if compiled is None:
            compiled = self._env.from_string(template)
            if len(self._compiled) >= _COMPILED_KEPT:
                self._compiled.clear()
            self._compiled[template] = compiled
        return compiled

    def check(self, template: str) -> None:
        """Raise TemplateRenderError when the template does not compile."""
        try:
            self._env.from_string(template)
        except TemplateError as exc:
            raise TemplateRenderError(f"invalid template {template!r}: {exc}") from exc

    def _fast_template(self, template: str) -> FastTemplate | None:
        if template not in self._fast:
            if len(self._fast) >= _COMPILED_KEPT:
                self._fast.clear()
            self._fast[template] = compile_fast(self._env, template)
        return self._fast[template]

    def render(self, template: str, context: dict[str, Any]) -> str:
        if "{" not in template:
            return template
        fast = self._fast_template(template)
        if fast is not None:
            try:
                return fast(context)
            except MissingValue as exc:
                raise TemplateRenderError(f"cannot render {template!r}: {exc}") from exc
        try:
            return self._template(template).render(**context)
        except TemplateError as exc:
            raise TemplateRenderError(f"cannot render {template!r}: {exc}") from exc
        except (TypeError, ValueError, AttributeError) as exc:
            raise TemplateRenderError(f"cannot render {template!r}: {exc}") from exc

    def render_tree(self, value: Any, context: dict[str, Any]) -> Any:
        """Render every string inside nested dicts and lists; other values pass through."""
        if isinstance(value, str):
            return self.render(value, context)
        if isinstance(value, list):
            return [self.render_tree(item, context) for item in value]
        if isinstance(value, dict):
            return {key: self.render_tree(item, context) for key, item in value.items()}
        return value
