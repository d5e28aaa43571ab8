"""The operator's entry points: the `autofix` command line and its HTTP client."""
