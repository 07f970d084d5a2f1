# The two commands a newcomer needs: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed-dev

.DEFAULT_GOAL := help
.PHONY: help install serve test test-unit lint typecheck services tools bench loadtest lock clean cluster

help:
	@echo "make serve   set up .venv, train a model if there is none, serve on 127.0.0.1:8000"
	@echo "make test    set up .venv, make sure PostgreSQL and Redis run, run ruff, import-linter, mypy and pytest"
	@echo "make test-unit  the fast loop: unit tests only, under a minute"
	@echo "make bench   compare the service with a naive baseline and two ceilings (installs wrk if missing);"
	@echo "             BENCH_ARGS=\"cache --rounds 3\" runs another suite: python -m benchmarks --help lists them"
	@echo "make loadtest  Locust against a seeded server it starts; fails past 0.1 % errors or p95 500 ms"
	@echo "make cluster three instances behind HAProxy on 127.0.0.1:8080, on this machine's PostgreSQL and Redis"
	@echo "make lock    re-resolve requirements/*.lock from pyproject.toml"

# One locked environment for serving and testing; bytecode compiled at install so that the first
# start of a worker does not spend seconds compiling scikit-learn.
$(STAMP): pyproject.toml requirements/dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements/dev.lock
	$(BIN)/uv pip install --quiet --no-deps --python $(BIN)/python -e .
	@touch $(STAMP)

# The serving kernels compiled ahead of time into src/churn_mlops/_kernels*.so and its manifest
# (core/native.py): a worker then imports neither numba nor llvmlite (about 100 MiB of RSS).
# Rebuilt, in about 10 s, when the environment or a kernel module changes; a stale build only
# falls back to numba's JIT, with a warning.
KERNELS := src/churn_mlops/_kernels.json
KERNEL_SOURCES := src/churn_mlops/core/native.py src/churn_mlops/core/native_build.py \
	src/churn_mlops/model/forest_kernels.py src/churn_mlops/model/treeshap_plan.py \
	src/churn_mlops/model/treeshap.py src/churn_mlops/model/drift_profile.py \
	src/churn_mlops/api/v2/kernels.py src/churn_mlops/security/limits.py
$(KERNELS): $(STAMP) $(KERNEL_SOURCES)
	$(BIN)/python -m churn_mlops.core.native_build

install: $(STAMP) $(KERNELS)

serve: install
	$(BIN)/churn-mlops serve

services:
	@scripts/ensure-services.sh

# wrk drives the benchmarks and the tests of the benchmark harness (benchmarks/); Debian packages it.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
tools:
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	@# promtool (from Debian's prometheus) checks deploy/prometheus/alerts.yml in the tests.
	@command -v promtool >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }
	@# haproxy balances the three instances of the cluster rehearsal (tests/e2e/cluster) and make cluster.
	@command -v haproxy >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends haproxy; }
	@# h2load (nghttp2-client) loads gRPC in the v2 bench as wrk loads REST (benchmarks/grpc_h2load.py).
	@command -v h2load >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends nghttp2-client; }
	@# chromium renders /docs offline in tests/e2e/test_docs_in_chromium.py (with its fonts: recommends).
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	@# The layering contracts of pyproject.toml ([tool.importlinter]); docs/architecture.md.
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

# The suite on two processes (pytest-xdist, a file's tests on one process: they share its
# module fixtures), then the timed tests alone (tests/conftest.py TIMED): about half the time of
# one process on this 2-core machine, whose single test process left a core idle.
# Bytecode is written even where the environment says not to (PYTHONDONTWRITEBYTECODE, set on
# this machine): else every test process and every server a test starts compiles the package
# and rewrites the test modules' asserts again, seconds per process.
test: export PYTHONDONTWRITEBYTECODE :=
test: install services tools lint typecheck
	$(BIN)/pytest -n 2 --dist loadfile -m "not timed"
	$(BIN)/pytest -m timed

# The fast loop: the unit tests (no network, no server process, no training run), in parallel
# with nothing else; under a minute here.
test-unit: install
	$(BIN)/pytest tests/unit -m "not slow" -q

# The harness is a package of the repository, not of the wheel: it runs from the root.
BENCH_ARGS ?= service
bench: install tools
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# Locust, headless, bounded, against a server it starts (seeded SQLite database, a user every
# Locust user logs in as); fails past the error ratio or when p95 is over the SLO. Users start
# 2 a second: each logs in once, and argon2 logins all at once on 2 cores starve predictions.
LOADTEST_USERS ?= 20
LOADTEST_SPAWN_RATE ?= 2
LOADTEST_DURATION ?= 30s
LOADTEST_P95_MS ?= 500
LOADTEST_MAX_ERROR_RATIO ?= 0.001
loadtest: install
	$(BIN)/python -m tests.load.run_loadtest --users $(LOADTEST_USERS) \
		--spawn-rate $(LOADTEST_SPAWN_RATE) --duration $(LOADTEST_DURATION) \
		--p95-ms $(LOADTEST_P95_MS) --max-error-ratio $(LOADTEST_MAX_ERROR_RATIO)

# Three `serve --workers 1` behind HAProxy (deploy/haproxy/haproxy.cfg), sharing PostgreSQL,
# Redis and var/models, for a person to try; Ctrl-C stops them (scripts/cluster.sh).
cluster: install services tools
	@scripts/cluster.sh

lock: $(STAMP)
	$(BIN)/uv pip compile --quiet pyproject.toml --python-version 3.11 -o requirements/runtime.lock
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --extra bench --python-version 3.11 -o requirements/dev.lock

clean:
	rm -f src/churn_mlops/_kernels*.so $(KERNELS)
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache
