# The two commands a newcomer needs:
#   make demo   set up everything, generate a sample month, run the pipeline on the embedded defaults
#   make test   set up everything and run the whole test suite (make test-unit: the unit tier)
# Both are idempotent: the virtualenv and the JVM jars are created once and reused.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ROWS   ?= 200000
MONTH  ?= 2025-01
PYTEST_ARGS ?=
# Test processes for make test: each runs whole modules, with its own Spark session and database.
TEST_WORKERS ?= 2

.PHONY: setup demo test test-unit lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed
	@java -version >/dev/null 2>&1 || { echo "Java 17 is required (apt-get install openjdk-17-jre-headless)"; exit 1; }

demo: setup
	$(PY) -m chillflow demo --rows $(ROWS) --month $(MONTH)

# The jars are resolved once before the workers start, so two JVMs never resolve them at once.
test: setup
	$(PY) -m chillflow jars path >/dev/null
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check chillflow tests bench jobs
	$(VENV)/bin/ruff format --check chillflow tests bench jobs

# Stops the embedded PostgreSQL first (without the venv: a fast shutdown is a SIGINT to the
# postmaster), and deletes its relocated cluster too (chillflow/storage/pg_server.py).
clean:
	@pg=.chillflow/postgres; private=$$(cat $$pg/relocated 2>/dev/null); \
	pgdata=$${private:+$$private/pgdata}; pgdata=$${pgdata:-$$pg}; \
	pid=$$(head -n 1 "$$pgdata/postmaster.pid" 2>/dev/null); \
	if [ -n "$$pid" ] && [ "$$(ps -o comm= -p "$$pid")" = postgres ]; then \
	  kill -INT "$$pid"; while kill -0 "$$pid" 2>/dev/null; do sleep 0.1; done; \
	  echo "stopped the local PostgreSQL in $$pgdata"; \
	fi; \
	case $$private in */chillflow-pg-*) rm -rf "$$private" ;; esac
	rm -rf .chillflow bench/out
