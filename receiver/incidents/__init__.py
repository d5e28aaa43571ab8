"""What happens to incidents: filing, approvals, manual runs, pause and maintenance."""
