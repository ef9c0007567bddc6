# Runyard developer entry points.  `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# uv: the one on PATH, else where `pip install --user uv` puts it (installed on demand).
USER_BIN := $(shell python3 -c 'import site; print(site.getuserbase() + "/bin")' 2>/dev/null || echo $(HOME)/.local/bin)
UV ?= $(or $(shell command -v uv 2>/dev/null),$(USER_BIN)/uv)
RUN := $(UV) run --frozen

# Some machines' environments set PYTHONDONTWRITEBYTECODE=1: every Python process (each test
# worker, each service of the stack) would then compile every module it imports from source,
# about half the CPU of starting a service. Let Python keep its bytecode in __pycache__ (ignored
# by git).
unexport PYTHONDONTWRITEBYTECODE

LINT_PATHS ?= .
MYPY_PATHS ?= shared/src services/auth/src services/experiments/src services/notifications/src \
	services/webhooks/src services/api-gateway/src services/console/src deploy/local/src \
	clients/python/src
PYTEST_ARGS ?=
SERVICES ?=
DOCKER_COMPOSE ?= docker compose

.PHONY: help uv sync browser lint format test test-fast up down status restart bench clean up-docker down-docker admin

help:
	@echo "make up          run the local stack in the foreground (Ctrl-C stops it)"
	@echo "                 SERVICES=experiments,auth starts a subset; GATEWAY_PORT, DATABASE_URL,"
	@echo "                 KAFKA_BOOTSTRAP_SERVERS, SMTP_URL use existing ones"
	@echo "                 REPLICAS=webhooks=2,notifications=2 runs several processes of a service;"
	@echo "                 PARTITIONS=8 creates the topics with 8 partitions (default 4)"
	@echo "make down        stop the stack started by 'make up' (from another terminal)"
	@echo "make status      every process of the running stack: state, pid, uptime, restarts,"
	@echo "                 ready or not, URL or port"
	@echo "make restart     SERVICE=name restarts one process of the running stack (a service,"
	@echo "                 a replica such as webhooks-2, postgres, kafka, mail) and waits until"
	@echo "                 it is ready; the others are left alone"
	@echo "make test        lint + all tests (installs uv if missing, uv sync --frozen)"
	@echo "make test-fast   lint + every test but the whole-stack suites and the slow worst cases, in parallel"
	@echo "                 PYTEST_ARGS='services/auth -k login' narrows any test run"
	@echo "make format      ruff check --fix, then ruff format"
	@echo "make lint        ruff check, ruff format --check, mypy (strict) on shared, services, devstack"
	@echo "make sync        uv sync --frozen"
	@echo "make bench       run the benchmark scripts in bench/"
	@echo "make admin       create an admin user (asks for username, email, password); uses"
	@echo "                 AUTH_DATABASE_URL, else the local stack's database"
	@echo "make clean       remove caches and .data (the local stack's database, keys, mail)"
	@echo "make up-docker   the same stack on containers (Kafka, PostgreSQL 16, Mailpit)"
	@echo "make down-docker stop it"

uv:
	@if ! command -v "$(UV)" >/dev/null 2>&1; then \
		echo "uv not found: installing it with pip --user"; \
		python3 -m pip install --user --quiet uv \
			|| python3 -m pip install --user --quiet --break-system-packages uv; \
	fi
	@command -v "$(UV)" >/dev/null 2>&1 || { echo "uv still not found at $(UV)"; exit 1; }

sync: uv
	$(UV) sync --frozen

lint: uv
	$(RUN) ruff check $(LINT_PATHS)
	$(RUN) ruff format --check $(LINT_PATHS)
	$(RUN) mypy $(MYPY_PATHS)

format: uv
	$(RUN) ruff check --fix $(LINT_PATHS)
	$(RUN) ruff format $(LINT_PATHS)

# Debian's chromium and chromium-driver for the console's browser tests (apt-get, when missing).
browser:
	bash .ci/install-chromium

# The whole-stack suites start every service (e2e, faults, fuzz, the SDK's, the console's and the
# stock MLflow client's, which installs MLflow into its own venv under .data/mlflow-venv) and
# run one at a time. Every other test has its own database (cloned from a migrated template) and
# its own topics, so those run in parallel: PYTEST_WORKERS pytest-xdist workers, each with its own
# embedded PostgreSQL and broker. They mostly wait on I/O, so more workers than cores pays;
# worksteal: a worker that runs out takes tests queued on a busy one (a few take 10-50 s).
PYTEST_WORKERS ?= 4
STACK_MARKERS := e2e or faults or fuzz or sdk or console or mlflow
STACK_SUITES := --ignore=tests/e2e --ignore=tests/faults --ignore=tests/fuzz --ignore=tests/console \
	--ignore=tests/mlflow
PARALLEL := $(if $(filter-out 0 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist worksteal,)
# The whole-stack suites keep their temporary directories (their stacks' PostgreSQL data among
# them) in the checkout, not under pytest's shared /tmp/pytest-of-<user>: every pytest session
# sets that one back to mode 0700, which locks the embedded PostgreSQL's own system user out of a
# stack that is starting when another pytest starts on the machine (initdb: Permission denied).
# pytest makes only the last directory of the path: the recipe makes .data first.
STACK_BASETEMP := --basetemp=$(CURDIR)/.data/pytest-stack

test: sync browser
	$(MAKE) --no-print-directory lint UV="$(UV)"
	$(RUN) pytest $(STACK_SUITES) -m "not ($(STACK_MARKERS))" $(PARALLEL) $(PYTEST_ARGS)
	mkdir -p $(CURDIR)/.data
	$(RUN) pytest -m "$(STACK_MARKERS)" $(STACK_BASETEMP) $(PYTEST_ARGS)

# The quick loop: the parallel part without the slow worst cases.
test-fast: sync browser
	$(MAKE) --no-print-directory lint UV="$(UV)"
	$(RUN) pytest $(STACK_SUITES) -m "not ($(STACK_MARKERS)) and not slow" $(PARALLEL) $(PYTEST_ARGS)

up: uv
	$(RUN) python -m runyard.devstack up $(if $(SERVICES),--services $(SERVICES),) $(if $(REPLICAS),--replicas $(REPLICAS),) $(if $(PARTITIONS),--partitions $(PARTITIONS),)

down: uv
	$(RUN) python -m runyard.devstack down

status: uv
	$(RUN) python -m runyard.devstack status

restart: uv
	@if [ -z "$(SERVICE)" ]; then echo "usage: make restart SERVICE=name (names: make status)"; exit 2; fi
	$(RUN) python -m runyard.devstack restart $(SERVICE)

admin: uv
	$(RUN) python -m runyard.auth create-admin

bench: uv
	@scripts=$$(ls bench/*.py 2>/dev/null || true); \
	if [ -z "$$scripts" ]; then echo "no benchmark scripts in bench/"; exit 0; fi; \
	for script in $$scripts; do echo "== $$script"; $(RUN) python "$$script"; done

clean:
	@if [ -f .data/stack.pid ] && kill -0 "$$(cat .data/stack.pid)" 2>/dev/null; then \
		echo "the local stack is running: 'make down' first"; exit 1; fi
	rm -rf .data .pytest_cache .ruff_cache .mypy_cache
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +

up-docker:
	$(DOCKER_COMPOSE) -f docker-compose.yml up --build

down-docker:
	$(DOCKER_COMPOSE) -f docker-compose.yml down
