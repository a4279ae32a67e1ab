# Two commands for a new user: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint ui clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# setuptools warns on every editable install of a flat layout (folders beside the
	@# package could shadow it); nothing is wrong, and a page of it reads like a failure.
	PYTHONWARNINGS=ignore $(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/datashare demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/datashare contracts lint
	$(BIN)/pytest -q -n auto --dist loadfile

# The tests that do not run the whole pipeline: a minute, for the edit-test loop.
test-fast: $(STAMP)
	$(BIN)/pytest -q -n auto --dist loadfile -m "not slow"

ui: $(STAMP)
	$(BIN)/datashare ui

clean:
	rm -rf $(VENV) .datashare
