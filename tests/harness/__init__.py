"""Real components for the tests: each one starts on a free loopback port in a temp dir."""
