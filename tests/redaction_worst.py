"""Worst-case inputs for the redactor's cost: per shape, its secret-shaped corpus lines
and the literals its patterns start with, repeated to a size (repeated prefixes), cut
short of a match (near-misses), and the `a.a.a…` line of issue #26."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

CORPUS = Path(__file__).with_name("redaction_corpus")

# The literals each shape starts with, and near-misses that make it scan and fail.
_LEADS = (
    "a.", "a", " ", "@", ":@", "=", '"', "password", 'password="', "password='",
    "password:\n ", "pass=", "key: ", "apiapi", "DB_PASSW", "a://:", "a://a:b", "eyJ",
    "eyJa.", "-----BEGIN ", "-----BEGIN PRIVATE KEY-----", "Private-Lines:", "xoxb-",
    "xapp-", "aws", "aws_secret=", "Authorization: ", "cookie=", "digest ", "bearer ",
    "--password ", "ghp_", "github_pat_", "glpat-", "npm_", "pypi-AgE", "AKIA", "AKC",
    "APA", "sk_live_", "AIza", "SG.aaaa", "sq0csp-", "ACa", "sk-", "0" * 9 + ":",
    "a" * 32 + "-us", "a" * 23 + ".", "hooks.slack.com/services/",
)


def corpus_lines() -> list[str]:
    """The secret corpus, markers removed, `\\n` as a line break."""
    return [line.replace("<<S>>", "").replace("<</S>>", "").replace("\\n", "\n")
            for line in (CORPUS / "secrets.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def worst_case_inputs(size: int) -> Iterator[tuple[str, str]]:
    """(what, text of `size` characters), each a repeated seed."""
    seeds = list(_LEADS)
    for line in corpus_lines():
        seeds += [line[:-1], line[: len(line) // 2]]  # a near-miss, a repeated prefix
    for seed in dict.fromkeys(s for s in seeds if s):
        yield seed[:40], (seed * (size // len(seed) + 1))[:size]
