"""Playbook files for tests: one restart-on-TargetDown playbook, with the knobs tests turn."""

from __future__ import annotations

import uuid
from pathlib import Path

PLAYBOOK = """
playbooks:
  - name: restart-on-down
    matchers: ['alertname="TargetDown"']
    target: "{{{{ labels.container }}}}"
    cooldown: {cooldown}
    circuit_breaker: {{max_actions: 3, window: 10m, open_for: {open_for}, open_for_max: 1h,
                      reset_after: 30m}}
    actions:
      - restart: {{timeout_s: 5}}
      - wait_healthy: {{timeout_s: 20, running_for_s: 0.5}}
"""


# One restart and nothing else, no breaker settings: the fleet tests' playbook.
RESTART_ONLY = """
playbooks:
  - name: restart-on-down
    matchers: ['alertname="TargetDown"']
    target: "{{ labels.container }}"
    cooldown: 0s
    actions:
      - restart: {timeout_s: 5}
"""

def write_playbooks(tmp_path: Path, cooldown: str = "0s", open_for: str = "2s") -> Path:
    """The restart playbook above in a fresh file under tmp_path."""
    path = tmp_path / f"playbooks-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(PLAYBOOK.format(cooldown=cooldown, open_for=open_for))
    return path


def restart_playbook(name: str = "restart-on-down", *, cooldown: str = "0s",
                     max_actions: int = 3, open_for: str = "1m", restart_timeout_s: float = 5,
                     wait_timeout_s: float = 20, running_for_s: float = 0.5,
                     extra_steps: tuple[str, ...] = (), mode: str | None = None,
                     approval_timeout: str | None = None) -> str:
    steps = [f"      - restart: {{timeout_s: {restart_timeout_s:g}}}",
             f"      - wait_healthy: {{timeout_s: {wait_timeout_s:g}, "
             f"running_for_s: {running_for_s:g}}}",
             *(f"      - {step}" for step in extra_steps)]
    return "\n".join([
        "playbooks:",
        f"  - name: {name}",
        "    matchers: ['alertname=\"TargetDown\"']",
        '    target: "{{ labels.container }}"',
        f"    cooldown: {cooldown}",
        *([f"    mode: {mode}"] if mode else []),
        *([f"    approval_timeout: {approval_timeout}"] if approval_timeout else []),
        f"    circuit_breaker: {{max_actions: {max_actions}, window: 10m, open_for: {open_for},",
        "                      open_for_max: 1h, reset_after: 30m}",
        "    actions:",
        *steps,
        "",
    ])
