"""Benchmarks for the autofix receiver (issue #8): `make bench` or `python -m bench.run`."""
