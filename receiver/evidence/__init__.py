"""Evidence captured before an action destroys it: state, logs, stats, the alert's value."""
