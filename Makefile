# The two commands a newcomer needs:
#   make demo   set up everything, generate a sample month, run the pipeline on the embedded defaults
#   make test   set up everything and run the whole test suite
# Both are idempotent: the virtualenv and the JVM jars are created once and reused.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ROWS   ?= 200000
MONTH  ?= 2025-01
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed
	@java -version >/dev/null 2>&1 || { echo "Java 17 is required (apt-get install openjdk-17-jre-headless)"; exit 1; }

demo: setup
	$(PY) -m chillflow demo --rows $(ROWS) --month $(MONTH)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check chillflow tests bench jobs
	$(VENV)/bin/ruff format --check chillflow tests bench jobs

clean:
	rm -rf .chillflow bench/out
