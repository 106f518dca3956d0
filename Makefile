# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit flower clean venv templates proto

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,torch,sklearn]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/corolla run examples/quickstart-numpy --output runs/demo --force

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts reproductions
	$(BIN)/ruff format --check src tests benchmarks examples scripts reproductions

typecheck: $(STAMP)
	$(BIN)/mypy

# Two workers, a test module each at a time: many tests wait on processes and sockets.
unit: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Flower pins protobuf < 7, Corolla >= 7: the differential tests against Flower run in a
# venv of their own, with Corolla installed without its dependencies (the strategy layer
# needs only NumPy).
FLOWER_VENV := .venv-flower
FLOWER_STAMP := $(FLOWER_VENV)/.installed

$(FLOWER_STAMP): pyproject.toml
	test -x $(FLOWER_VENV)/bin/python || $(PYTHON) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOWER_VENV)/bin/python -m pip install --quiet 'flwr==1.41.0' prometheus-client pytest pytest-timeout hypothesis
	$(FLOWER_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(FLOWER_STAMP)

flower: $(FLOWER_STAMP)
	$(FLOWER_VENV)/bin/python -m pytest -q tests/strategy/flower

test: lint typecheck flower unit

templates: $(STAMP)
	$(BIN)/python scripts/sync_templates.py

proto: $(STAMP)
	$(BIN)/python -m corolla.transport._generate

clean:
	rm -rf $(VENV) $(FLOWER_VENV) runs .pytest_cache .mypy_cache .ruff_cache
