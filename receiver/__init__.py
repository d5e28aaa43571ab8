"""autofix receiver: Alertmanager notifications in, guarded remediation out."""
