# `make test` and `make demo` are the two commands a newcomer runs (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The demo's extras on top of the test ones; redone whenever $(STAMP) is (pyproject.toml changed).
DEMO_STAMP := $(VENV)/.installed-demo

# The suite waits on mounts, servers and subprocesses more than on the CPU: three workers
# finish it in under half the time of one, even on two cores.
PYTEST_WORKERS ?= -n 3 --dist worksteal

.PHONY: test demo lint system-deps clean

# pyfuse3 compiles against libfuse3: install Debian's packages first when they are missing.
system-deps:
	@bash tools/dev/install-system-deps

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: system-deps $(STAMP)
	$(PY) -m ruff check alicefs tests tools
	$(PY) -m pytest $(PYTEST_WORKERS)

$(DEMO_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,demo]'
	touch $(DEMO_STAMP)

demo: system-deps $(DEMO_STAMP)
	$(PY) tools/dev/demo.py

lint: $(STAMP)
	$(PY) -m ruff check alicefs tests tools
	$(PY) -m ruff format --check alicefs tests tools

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
