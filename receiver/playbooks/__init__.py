"""Playbooks: which alerts lead to which actions, as validated data."""
