# Two commands for a new user: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two installs into one venv: what the pipeline needs to run (`make demo`, `make ui`), and
# that plus the `dev` extras the tests need (`make test`). The demo waits for the first only
# (the tests' extras, playwright, ruff, seaweedfs, celery and the rest: 30 more packages,
# 113 of 378 MB); `make test` adds them to whichever venv is there. A venv of the previous
# Makefile has only STAMP, which holds the runtime too.
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed
# The installer: uv, a pip-compatible installer that pip itself installs into the venv
# from PyPI, fetches the packages' pages and files in parallel where pip goes one at a time
# (from a fresh clone with a fresh cache, load 22: the runtime in 39 s and 15 s to install uv,
# against 186 s with pip). Where uv cannot be had or fails (say an index or proxy only
# pip.conf knows), pip does the install, as before. setuptools warns on every editable
# install of a flat layout (folders beside the package could shadow it); nothing is wrong,
# and a page of it reads like a failure.
PIP_INSTALL := install() { \
	  if [ -x $(BIN)/uv ] && $(BIN)/uv pip install --quiet --compile-bytecode \
	       --python $(BIN)/python -c constraints.txt "$$@"; then :; \
	  else PYTHONWARNINGS=ignore $(BIN)/pip install --quiet -c constraints.txt "$$@"; fi; }; install

.PHONY: demo test test-fast lint ui clean chromium screenshots postgresql redis spark

# Python writes each module's bytecode beside it once and reads it after; an environment that
# says not to (PYTHONDONTWRITEBYTECODE, set in many container images, this machine's too) made
# every process of the demo and the suite compile the project's modules again: about 0.15 s
# of CPU a `datashare`, worker or code-server process. So the recipes here run without it.
# (pytest's rewritten test modules are kept too, but a fresh clone's two workers collect at
# once, so only a later run reads them.)
unexport PYTHONDONTWRITEBYTECODE

# Made once; the stamps below install into it (never remade, so `make test` after `make
# demo` adds to the demo's venv). Without uv, a current pip first: Python 3.11's own pip
# 23.2 took longer over the runtime alone (250 s, 52 s CPU) than pip 26 over runtime and dev
# extras (187 s, 40 s CPU; fresh cache, load 18 to 25).
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet "uv>=0.13,<0.14" 2>/dev/null || { \
	  echo "No uv from the package index: pip installs instead (slower)"; \
	  $(BIN)/pip install --quiet --upgrade pip; }

# pip says nothing while it works (--quiet: its page of progress hid what matters), so
# each install says first what it is doing.
$(RUNTIME): pyproject.toml constraints.txt | $(BIN)/python
	@# The dev extras, newer than both files, came with the runtime.
	@if [ $(STAMP) -nt pyproject.toml ] && [ $(STAMP) -nt constraints.txt ]; then :; else \
	  echo "Installing datashare and what it runs on into $(VENV) (the first time: a few minutes)"; \
	  $(PIP_INSTALL) -e .; fi
	@touch $@

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@echo "Installing datashare and its tests' tools into $(VENV) (the first time: a few minutes)"
	@$(PIP_INSTALL) -e ".[dev]"
	@touch $(RUNTIME) $@

demo: $(RUNTIME)
	$(BIN)/datashare demo

test: $(STAMP) chromium postgresql redis spark
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/datashare contracts lint
	@# How the tests are shared out between the workers: tests/conftest.py, at the end.
	$(BIN)/pytest -q -n auto --dist loadgroup --no-loadscope-reorder

# The tests that do not run the whole pipeline: a minute, for the edit-test loop.
test-fast: $(STAMP)
	$(BIN)/pytest -q -n auto --dist loadfile -m "not slow"

# The browser tests drive Debian's chromium through Playwright (Playwright's own browser
# download is never used). Root on Debian, as CI is, gets it installed; anyone else is told
# how, and those tests skip (on CI, where CI=true, they fail instead).
chromium:
	@command -v chromium >/dev/null 2>&1 || [ -n "$(DATASHARE_CHROMIUM)" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's chromium for the browser tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	      >/dev/null; } || echo "Could not install chromium: the browser tests will skip."; \
	  else \
	    echo "No chromium: the browser tests will skip (as root: apt-get install chromium)."; \
	  fi; }

# The deployment tests run a throwaway PostgreSQL cluster of Debian's `postgresql` package
# (tests/postgres_server.py). Root on Debian, as CI is, gets it installed; anyone else is
# told how, and those tests skip (on CI they fail instead).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
	  || [ -n "$(DATASHARE_PG_BIN)" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's postgresql for the deployment tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      postgresql >/dev/null; } || echo "Could not install postgresql: its tests will skip."; \
	  else \
	    echo "No PostgreSQL: the deployment tests will skip (as root: apt-get install postgresql)."; \
	  fi; }

# The workers' tests run a throwaway broker of Debian's `redis-server` package
# (tests/redis_server.py); installed like postgresql above, or those tests skip.
redis:
	@command -v redis-server >/dev/null 2>&1 || [ -n "$(DATASHARE_REDIS_SERVER)" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's redis-server for the workers' tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      redis-server >/dev/null; } || echo "Could not install redis-server: its tests will skip."; \
	  else \
	    echo "No Redis: the workers' tests will skip (as root: apt-get install redis-server)."; \
	  fi; }

# The Spark tests (tests/test_spark_lake.py) read the lake with a real Spark: pyspark, the
# `spark` extra's requirement (keep the two alike), installed beside the venv in .venv/spark
# rather than in it (see pyproject.toml), and Java 17, Debian's openjdk-17-jre-headless. Root
# on Debian, as CI is, gets Java installed; anyone else is told how, and those tests skip (on
# CI they fail instead).
SPARK_SITE := $(VENV)/spark
$(SPARK_SITE)/.installed: constraints.txt | $(STAMP)
	$(BIN)/pip install --quiet --upgrade -c constraints.txt --target $(SPARK_SITE) "pyspark>=4,<5"
	touch $@

spark: $(SPARK_SITE)/.installed
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's openjdk-17-jre-headless for the Spark tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      openjdk-17-jre-headless >/dev/null; } || echo "Could not install Java: the Spark tests will skip."; \
	  else \
	    echo "No Java: the Spark tests will skip (as root: apt-get install openjdk-17-jre-headless)."; \
	  fi; }

# The README's screenshots: the browser tests, every page they look at kept in
# docs/screenshots/ (1280x800), made afresh.
BROWSER_TESTS = $(shell grep -l "^from tests.browser import" tests/test_*.py)
screenshots: $(STAMP) chromium
	rm -rf docs/screenshots
	DATASHARE_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/pytest -q -n auto --dist loadfile \
	  $(BROWSER_TESTS)

ui: $(RUNTIME)
	$(BIN)/datashare ui

clean:
	rm -rf $(VENV) .datashare test-artifacts
