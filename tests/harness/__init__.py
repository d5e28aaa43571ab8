"""Real components for the tests: each one starts on a free loopback port in a temp dir.

Also every helper more than one test module uses (one module per concern): a test module
never imports another (tests/test_layout.py). Time-dependent tests inject
tests/harness/clock.py as `services.clock` instead of sleeping."""
