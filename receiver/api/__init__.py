"""HTTP layer: thin views that parse, call domain functions, and answer."""
