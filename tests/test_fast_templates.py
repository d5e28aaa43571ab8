"""The fast path for simple target templates renders exactly what the Jinja sandbox does."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.playbooks.templating import TemplateRenderer, TemplateRenderError

NAMES = st.sampled_from(["container", "alertname", "service", "instance", "job", "items",
                         "get", "x-y"])
VALUES = st.text(max_size=8) | st.sampled_from(["", "None", "{{ labels.job }}", "0"])
LABELS = st.dictionaries(NAMES, VALUES, max_size=5)


def _lookup() -> st.SearchStrategy[str]:
    mapping = st.sampled_from(["labels", "annotations"])
    attr = st.sampled_from(["container", "alertname", "service", "job"])
    return st.one_of(
        st.builds(lambda m, a: f"{m}.{a}", mapping, attr),
        st.builds(lambda m, a: f"{m}[{a!r}]", mapping, NAMES),
        st.builds(lambda m, a: f"{m}.get({a!r})", mapping, NAMES),
        st.builds(lambda m, a, d: f"{m}.get({a!r}, {d!r})", mapping, NAMES, st.text(max_size=4)),
        st.just("status"),
        st.builds(repr, st.text(alphabet="ab-_ ", max_size=4)),
    )


EXPRESSIONS = st.lists(_lookup(), min_size=1, max_size=3).map(" or ".join)
TEMPLATES = st.lists(
    st.one_of(EXPRESSIONS.map(lambda e: "{{ " + e + " }}"),
              st.text(alphabet="ab-_. \n", max_size=4)),
    min_size=1, max_size=3).map("".join)


def _outcome(renderer: TemplateRenderer, template: str, context: dict[str, Any]) -> str:
    try:
        return "ok:" + renderer.render(template, context)
    except TemplateRenderError as exc:
        return "error:" + str(exc)


class _JinjaOnly(TemplateRenderer):
    def _fast_template(self, template: str) -> None:
        return None


@settings(max_examples=400, deadline=None)
@given(TEMPLATES, LABELS, LABELS, st.sampled_from(["firing", "resolved"]))
def test_fast_path_agrees_with_jinja(template: str, labels: dict[str, str],
                                     annotations: dict[str, str], status: str) -> None:
    context = {"labels": labels, "annotations": annotations, "status": status}
    assert _outcome(TemplateRenderer(), template, context) == \
        _outcome(_JinjaOnly(), template, context)


def test_the_shipped_target_forms_take_the_fast_path() -> None:
    renderer = TemplateRenderer()
    context = {"labels": {"alertname": "A"}, "annotations": {}, "status": "firing"}
    for template in ("{{ labels.container }}", "{{ labels.get('container') or labels.alertname }}",
                     "svc-{{ labels['service'] }}"):
        assert renderer._fast_template(template) is not None, template
    assert renderer.render("{{ labels.get('container') or labels.alertname }}", context) == "A"


def test_dict_methods_and_anything_else_stay_with_jinja() -> None:
    renderer = TemplateRenderer()
    for template in ("{{ labels.items }}", "{{ labels.container | upper }}",
                     "{% if labels.a %}x{% endif %}", "{{ labels.container ~ 'x' }}",
                     "{{ labels.pop('a') }}", "{{ 1 }}"):
        assert renderer._fast_template(template) is None, template
