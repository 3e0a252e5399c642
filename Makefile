# The README's two commands are `make up` and `make test`; everything they need
# is installed by the targets below, on a fresh machine, without a Docker engine.
# Python packages come from requirements/lock.txt (exact versions and hashes);
# `make lock` is the one way they change.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP_VERSION := 26.3
DASHBOARD_CLIENT := gateway/web/static/client/index.js

.PHONY: up down status test lint typecheck unit deps browser chart-tools bench lock clean js soak

$(VENV)/.installed: pyproject.toml requirements/lock.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Tidings needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q pip==$(PIP_VERSION)
	$(BIN)/pip install -q --require-hashes -r requirements/lock.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

deps: $(VENV)/.installed $(DASHBOARD_CLIENT)
	$(BIN)/tidings deps

# The dashboard (gateway/web) runs on the JavaScript client: its ES modules are
# compiled into a git-ignored folder the gateway serves under /dashboard/client/.
# Node 20 and npm are all it needs.
$(DASHBOARD_CLIENT): clients/js/package-lock.json clients/js/tsconfig.json clients/js/tsconfig.dashboard.json $(wildcard clients/js/src/*.ts)
	cd clients/js && npm ci --no-audit --no-fund && npm run build:dashboard
	touch $@

# Only the tests need a browser: Debian's chromium and playwright-core from npm.
browser: $(VENV)/.installed
	$(BIN)/python -m infra.browser

# The Helm chart's checks (tests/deploy/test_chart.py): helm and kubeconform
# built with `go install` at pinned versions, and kubeconform's schemas made from
# Kubernetes' OpenAPI document and the KEDA and Prometheus-operator CRDs, all
# fetched through the Go module proxy into ~/.cache/tidings/go.
chart-tools: $(VENV)/.installed
	$(BIN)/python -m infra.chart

up: deps
	$(BIN)/tidings up --demo

down:
	$(BIN)/tidings down

status:
	$(BIN)/tidings status

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy
	# Each example is its own program (their run.py and worker.py would clash
	# as modules in one mypy run), so each is checked on its own.
	for example in examples/*/; do $(BIN)/mypy --strict "$$example" || exit 1; done

unit: $(VENV)/.installed
	$(BIN)/pytest -m unit

# The JavaScript client (clients/js): its locked dev dependencies, its tests
# (which build it first) and the size budget; Node 20 and npm are all it needs.
js:
	cd clients/js && npm ci --no-audit --no-fund && npm test

test: deps browser chart-tools lint typecheck js
	$(BIN)/pytest --durations=30

# Long faults kept out of `make test` (a 5 min Kafka outage): see docs/reliability.md.
soak: deps
	$(BIN)/pytest -m soak

bench: deps
	$(BIN)/python -m bench

# Upgrades every locked Python package to the newest versions pyproject.toml's
# ranges allow, and npm's lock likewise; review the diff, then run `make test`.
lock: $(VENV)/.installed
	$(BIN)/pip install -q -r requirements/tools.in
	$(BIN)/uv pip compile pyproject.toml requirements/build.in --extra dev --extra agents \
	    --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	    --generate-hashes --upgrade --no-header --quiet -o requirements/lock.txt
	npm install --package-lock-only --ignore-scripts
	cd clients/js && npm install --package-lock-only --ignore-scripts

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
