# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit clean venv templates proto

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,torch,sklearn]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/corolla run examples/quickstart-numpy --output runs/demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts reproductions
	$(BIN)/ruff format --check src tests benchmarks examples scripts reproductions

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

templates: $(STAMP)
	$(BIN)/python scripts/sync_templates.py

proto: $(STAMP)
	$(BIN)/python -m corolla.transport._generate

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
