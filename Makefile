# One entry point per job. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Tests run single-threaded (tests/conftest.py): one pytest-xdist worker per core, each test file on one
# worker so that its module fixtures are built once.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: demo test install clean

$(STAMP): setup.py requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-test.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) tools/run_demo.py

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

clean:
	rm -rf $(VENV) build *.egg-info
