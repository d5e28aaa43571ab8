"""Settings: the one AUTOFIX_* settings class, read and validated at startup, and TLS."""
