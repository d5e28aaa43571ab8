"""Operator intent: act on a stopped or paused container only when autofix can show that
no operator put it there (docs/operator-intent.md).

One events follower per Docker daemon (elected through the database) records each opted-in
container's last state transition and its cause; `decide` turns the container's state and
what is known into act, skip or escalate.
"""

from receiver.intent.decide import (
    TABLE,
    ContainerFacts,
    Coverage,
    Known,
    Record,
    Rule,
    Verdict,
    decide,
    state_kind,
    what_is_known,
)

__all__ = ["TABLE", "ContainerFacts", "Coverage", "Known", "Record", "Rule", "Verdict",
           "decide", "state_kind", "what_is_known"]
