# autofix: `make test` runs everything CI runs; `make demo` runs the whole loop live.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help venv deps lint rules-check test test-optimized test-unit compose-test stack-test bench fuzz demo demo-down secrets image up down clean

help:
	@echo "make deps       install OS packages (as root) and the virtualenv"
	@echo "make test       lint, types, rule tests, unit, integration and end-to-end tests"
	@echo "make demo       start the whole loop locally and drive a scripted story"
	@echo "make demo-down  stop everything make demo started"
	@echo "make bench      benchmarks (estimated 1.5 h); writes bench/results and BENCHMARKS.md"
	@echo "make compose-test  docker-compose.yml deployed on a private dockerd, checked, torn down"
	@echo "                   (Compose v2; COMPOSE=docker-compose for 1.29)"
	@echo "make stack-test    the same file as a Swarm stack (docker stack deploy), converged, torn down"
	@echo "make up         the same stack with docker compose (needs image pulls)"

$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c .ci/constraints.txt -e '.[dev,bench]'
	touch $@

venv: $(VENV)/.installed

deps:
	bash .ci/install-os-packages
	$(MAKE) venv

lint: venv
	$(VENV)/bin/ruff check receiver target_app tests bench
	$(VENV)/bin/mypy receiver
	$(VENV)/bin/lint-imports

rules-check:
	promtool check rules rules/alert_rules.yml rules/autofix_self.yml
	promtool test rules rules/tests/*.yml

test: deps lint test-optimized
	$(PY) -m pytest $(PYTEST_ARGS)

# The guards' and the lifecycle's unit tests under `python -O`, which strips every assert:
# nothing in receiver/ may depend on one (tests/test_no_assert.py checks there is none).
OPTIMIZED_TESTS := tests/test_lifecycle.py tests/test_breaker.py tests/test_clock.py \
	tests/test_fast_templates.py tests/test_preconditions.py tests/test_blast_radius.py \
	tests/test_maintenance.py tests/test_pause.py tests/test_webhook.py tests/test_no_assert.py
test-optimized: venv
	$(PY) -O -m pytest -q -m "not e2e" -W "ignore::pytest.PytestConfigWarning" \
		$(PYTEST_ARGS) $(OPTIMIZED_TESTS)

test-unit: venv
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

# docker-compose.yml for real: a private dockerd in its own network namespace, every image
# built locally (no registry; Grafana is not started), secrets, proxies, networks and
# roles checked, one hang remediated end to end, everything torn down. As root. With
# Compose v2 (`docker compose`, installed by `make deps`) unless COMPOSE is given:
# `make compose-test COMPOSE=docker-compose` runs docker-compose 1.29. `make test` runs
# both (tests/test_compose.py, marked e2e).
compose-test: deps
	$(PY) -m tests.harness.compose_stack --compose "$(COMPOSE_TEST)"

# docker-compose.yml as a Swarm stack: the same private namespace, dockerd and local images,
# a single-node swarm on 127.0.0.1, `docker stack deploy` until every service (but Grafana)
# runs its replicas healthy, the receiver as 2 sharing PostgreSQL; everything torn down.
# As root. tests/test_swarm_stack.py runs it (marked e2e).
stack-test: deps
	$(PY) -m tests.harness.swarm_stack

bench: venv
	$(PY) -m bench.run

fuzz: venv
	AUTOFIX_FUZZ_EXAMPLES=2000 $(PY) -m pytest tests/test_fuzz.py $(PYTEST_ARGS)

demo: deps
	$(PY) -m tests.demo up

demo-down:
	$$(test -x $(PY) && echo $(PY) || echo python3) -m tests.demo down

secrets:
	sh docs/compose-secrets.sh

image: venv
	$(PY) -m target_app.build_image --docker-host $(DOCKER_HOST) --tag autofix/target-app:local

# Compose v2 (`docker compose`) if the plugin is installed, else docker-compose 1.29
# (Debian's package). `make up COMPOSE="docker-compose"` forces one.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
# compose-test: v2 unless COMPOSE was given (it never falls back to 1.29 by itself).
COMPOSE_TEST = $(if $(filter command line environment,$(origin COMPOSE)),$(COMPOSE),docker compose)

up: secrets
	$(COMPOSE) up -d --build

down:
	$(COMPOSE) down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
