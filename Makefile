# Runyard developer entry points.  `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# uv: the one on PATH, else where `pip install --user uv` puts it (installed on demand).
USER_BIN := $(shell python3 -c 'import site; print(site.getuserbase() + "/bin")' 2>/dev/null || echo $(HOME)/.local/bin)
UV ?= $(or $(shell command -v uv 2>/dev/null),$(USER_BIN)/uv)
RUN := $(UV) run --frozen

LINT_PATHS ?= .
MYPY_PATHS ?= shared/src
PYTEST_ARGS ?=
SERVICES ?=
DOCKER_COMPOSE ?= docker compose

.PHONY: help uv sync lint test up down status bench clean up-docker down-docker admin

help:
	@echo "make up          run the local stack in the foreground (Ctrl-C stops it)"
	@echo "                 SERVICES=experiments,auth starts a subset; GATEWAY_PORT, DATABASE_URL,"
	@echo "                 KAFKA_BOOTSTRAP_SERVERS, SMTP_URL use existing ones"
	@echo "                 REPLICAS=webhooks=2,notifications=2 runs several processes of a service;"
	@echo "                 PARTITIONS=8 creates the topics with 8 partitions (default 4)"
	@echo "make down        stop the stack started by 'make up' (from another terminal)"
	@echo "make status      is it running, is every service ready"
	@echo "make test        lint + all tests (installs uv if missing, uv sync --frozen)"
	@echo "make lint        ruff check, ruff format --check, mypy"
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

test: sync
	$(MAKE) --no-print-directory lint UV="$(UV)"
	$(RUN) pytest $(PYTEST_ARGS)

up: uv
	$(RUN) python -m runyard.devstack up $(if $(SERVICES),--services $(SERVICES),) $(if $(REPLICAS),--replicas $(REPLICAS),) $(if $(PARTITIONS),--partitions $(PARTITIONS),)

down: uv
	$(RUN) python -m runyard.devstack down

status: uv
	$(RUN) python -m runyard.devstack status

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
