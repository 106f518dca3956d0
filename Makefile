# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit browser flower-next clean venv templates proto

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,torch,sklearn,flower,privacy,tracking,dashboard,telemetry]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/corolla run examples/quickstart-numpy --output runs/demo --force

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts reproductions
	$(BIN)/ruff format --check src tests benchmarks examples scripts reproductions

typecheck: $(STAMP)
	$(BIN)/mypy

# The dashboard's browser tests drive Debian's Chromium (Playwright's own browsers are a
# download from elsewhere).
# apt needs root: sudo where the user is not.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser:
	command -v chromium >/dev/null || ( $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium ) || \
		echo "chromium could not be installed: the dashboard's browser tests will be skipped"

# Two workers, a test module each at a time: many tests wait on processes and sockets.
unit: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The flower extra takes the newest flwr the registry serves (1.42 where the registry has
# the certifi it declares, 1.41 otherwise); the other of the two supported releases (pure
# Python) goes beside it, and the Flower tests run a second time with it first on the path
# (of the Flower projects run end to end, one, SecAgg+ in the inline simulation; the runs
# on a link once, with the installed release).
FLWR_OTHER := $(VENV)/flwr-other
FLWR_OTHER_STAMP := $(FLWR_OTHER)/.installed

$(FLWR_OTHER_STAMP): $(STAMP)
	rm -rf $(FLWR_OTHER)
	installed=$$($(BIN)/python -c "import importlib.metadata as m; print(m.version('flwr'))"); \
	case "$$installed" in 1.42.*) other=1.41.0 ;; *) other=1.42.0 ;; esac; \
	echo "flwr $$installed is installed; the Flower tests run again with flwr $$other"; \
	$(BIN)/python -m pip install --quiet --no-deps --target $(FLWR_OTHER) "flwr==$$other"
	touch $(FLWR_OTHER_STAMP)

flower-next: $(FLWR_OTHER_STAMP)
	PYTHONPATH=$(CURDIR)/$(FLWR_OTHER) $(BIN)/python -m pytest -q -n 2 -p no:cacheprovider tests/flower tests/strategy/flower \
		-k 'not (test_projects or test_secaggplus or test_deploy or on_a_link) or (flower-numpy and process and simulated) or (secaggplus and inline)'

# mypy (one core, half a minute) runs beside the unit tests, which leave part of the
# second core idle while they wait on processes and sockets.
test: lint
	$(MAKE) --no-print-directory -j2 typecheck unit
	$(MAKE) --no-print-directory flower-next

templates: $(STAMP)
	$(BIN)/python scripts/sync_templates.py

proto: $(STAMP)
	$(BIN)/python -m corolla.transport._generate

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
