"""autofix's own signals: metrics, readiness, logs, and the Prometheus query client."""
