# MLOps lifecycle workshop and template: `make demo` runs the lifecycle, `make test` proves it.
SHELL := /bin/bash
# Python 3.12, as on the Databricks targets (serverless 4, DBR 17.3 LTS): python3.12 on PATH, else pyenv's 3.12,
# else 3.11 (also supported, the lock covers both). `make PYTHON=/path/to/python` picks another.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword $(foreach p,python3.12 $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12) python3.11 python3,\
  $(shell $(p) -c 'import sys; print(sys.executable) if (3, 11) <= sys.version_info[:2] < (3, 13) else None' 2>/dev/null | grep -v None)))
endif
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
JARS := .jars/manifest.json
BENCH_STAMP := $(VENV)/.bench-installed
# Local state (tables, MLflow): .lakehouse, or MLOPS_STATE_DIR; then executed/, reports/ and raw files live there too.
STATE_DIR := $(abspath $(or $(MLOPS_STATE_DIR),.lakehouse))
# Small data in CI and tests; `make demo ROWS=200000` for a bigger run. Unset, the runner takes MLOPS_ROWS, else
# the notebooks' default (20000), so `MLOPS_ROWS=5000 make demo` is not contradicted by a default passed as --rows.
ROWS ?=
SEED ?=
TEST_ROWS ?= 6000
TARGET ?= dev
SMOKE_ROWS ?= 6000
TEST_STATE := .lakehouse-test
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# Variables the Makefile reads from its command line (`make demo ROWS=5000`); any other one given there, such as a
# misspelled ROW=5000, stops make before it does anything instead of being ignored. MLOPS_* go to the runner, which checks them.
MAKE_VARIABLES := PYTHON ROWS SEED TEST_ROWS TARGET SMOKE_ROWS UI_PORT UI_TIMEOUT ENDPOINTS OMP_NUM_THREADS JAVA_HOME
UNKNOWN_VARIABLES := $(filter-out $(MAKE_VARIABLES) MLOPS_%,$(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v))))
ifneq ($(UNKNOWN_VARIABLES),)
$(error $(UNKNOWN_VARIABLES): not a variable this Makefile reads, so it would have no effect; it reads $(MAKE_VARIABLES) (e.g. make demo ROWS=5000 SEED=7))
endif
# One OpenMP thread per process: scikit-learn's OpenMP pool next to Spark's JVM on a 2-core laptop
# otherwise oversubscribes the cores and scoring gets tens of times slower.
export OMP_NUM_THREADS ?= 1

# A JAVA_HOME left pointing at a removed JDK stops Spark (its launcher prefers $JAVA_HOME/bin/java) even with a
# good java on PATH: then every recipe below uses the Java on PATH, and make says how to fix the setting.
ifneq ($(JAVA_HOME),)
ifeq ($(wildcard $(JAVA_HOME)/bin/java),)
PATH_JAVA_HOME := $(patsubst %/bin/java,%,$(realpath $(shell command -v java 2>/dev/null)))
ifneq ($(PATH_JAVA_HOME),)
$(info note: JAVA_HOME=$(JAVA_HOME) has no bin/java; using the Java on PATH ($(PATH_JAVA_HOME)). To fix it for good: export JAVA_HOME=$(PATH_JAVA_HOME), or unset JAVA_HOME)
export JAVA_HOME := $(PATH_JAVA_HOME)
endif
endif
endif

.PHONY: help install demo test unit check-stripped notebooks lab stop ui bench bench-env bench-lock lock dashboard strip clean java prereqs hooks databricks-smoke

help:
	@echo "make demo   - set up .venv and run every notebook headless, in order (executed copies in executed/)"
	@echo "make clean  - start over: delete the local state, executed notebooks, reports and generated raw files"
	@echo "make test   - set up .venv, run unit/data/model tests, check notebooks are stripped, run every notebook (Run All)"
	@echo "make lab    - JupyterLab on the notebooks (its kernels share one local Spark engine, stopped with the lab)"
	@echo "make stop   - stop the local Spark engine (a Spark Connect server; demo and test stop theirs themselves)"
	@echo "make hooks  - strip notebook outputs on every commit (pre-commit)"
	@echo "make ui     - MLflow UI on http://127.0.0.1:5000 (another port: make ui UI_PORT=5001)"
	@echo "make bench  - benchmark scripts (figures appended to bench/results.md; installs the bench extra, Evidently)"
	@echo "make dashboard - one-page status: what is deployed, health, freshness, drift, alerts (reports/dashboard.html)"
	@echo "make databricks-smoke - the bundle on your workspace: deploy, run the lifecycle at SMOKE_ROWS, tear down (TARGET=dev)"

java:
	@$(PYTHON) -c "import sys; sys.path.insert(0, '.'); from utils.platform import java_version, EnvironmentProblem; \
	exec('try:\n    java_version()\nexcept EnvironmentProblem as e:\n    sys.exit(str(e))')"

# What the install needs, checked before it downloads anything (about 2 GB): Python 3.12 (or 3.11) and a JDK 17+.
prereqs:
	@test -n "$(PYTHON)" || { echo "Python 3.12 (or 3.11) not found: install it (e.g. apt-get install python3.12, pyenv install 3.12) or use environment.yml"; exit 1; }
	@$(PYTHON) -c "import sys; v = sys.version_info[:2]; sys.exit(None if (3, 11) <= v < (3, 13) else \
	f'{sys.executable} is Python {v[0]}.{v[1]}; this project needs 3.12 (or 3.11): install python3.12 (make PYTHON=python3.12 ...) or use environment.yml')"
	@$(MAKE) --no-print-directory java
	@command -v javac >/dev/null || test -x "$$JAVA_HOME/bin/javac" || { echo "javac not found: the install compiles a small catalog \
	plugin, so it needs a JDK, not only a Java runtime: apt-get install openjdk-17-jdk-headless, brew install openjdk@17, or environment.yml"; exit 1; }

$(STAMP): requirements.lock pyproject.toml | prereqs
	@if [ -x $(BIN)/python ] && [ "$$($(BIN)/python -c 'import sys; print(sys.version_info[:2])')" != "$$($(PYTHON) -c 'import sys; print(sys.version_info[:2])')" ]; then \
	  echo "$(VENV) has another Python than $(PYTHON): recreating it"; rm -rf $(VENV); fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@mkdir -p $(VENV)/etc/ipython
	@printf '# JVM output goes to the terminal, not into notebook cells.\nc.IPKernelApp.capture_fd_output = False\n' > $(VENV)/etc/ipython/ipython_kernel_config.py
	@touch $(STAMP)

# Delta Lake's jars for the installed Spark and the catalog alias, resolved once (nothing is fetched at run time).
# Skips the fetch when the jars already match the installed Spark, Delta and sources (CI's restored cache).
$(JARS): requirements.lock utils/local/jvm.py utils/local/SessionCatalogAlias.java | $(STAMP) java
	$(BIN)/python -m utils.local.jvm install
	@touch $(JARS)

install: $(STAMP) $(JARS)

demo: $(STAMP) $(JARS) java
	$(BIN)/python -m tools.runner $(if $(ROWS),--rows $(ROWS)) $(if $(SEED),--seed $(SEED))

unit: $(STAMP) $(JARS)
	$(BIN)/python -m pytest tests -q --durations=25

check-stripped: $(STAMP)
	$(BIN)/nbstripout --verify --extra-keys "metadata.application/vnd.databricks.v1+notebook cell.metadata.application/vnd.databricks.v1+cell" $(NOTEBOOKS) \
	  || { echo "Notebooks carry outputs: run 'make strip' and commit."; exit 1; }

# Every notebook as JupyterLab's Run All runs it (all cells, in order, fresh kernel), then its outputs are checked
# for stderr; executed copies and HTML stay in $(TEST_STATE)/executed.
notebooks: $(STAMP) $(JARS) java
	MLOPS_STATE_DIR=$(CURDIR)/$(TEST_STATE) MLOPS_RAW_DIR=$(CURDIR)/$(TEST_STATE)/raw MLOPS_ROWS=$(TEST_ROWS) \
	  $(BIN)/python -m pytest --nbval-lax --nbval-cell-timeout=900 -p tests.notebooks.executed_copies -p no:cacheprovider \
	  --fresh-state \
	  $(NOTEBOOKS) tests/notebooks -q --durations=25

test: $(STAMP) $(JARS) java check-stripped unit notebooks

strip: $(STAMP)
	$(BIN)/nbstripout --extra-keys "metadata.application/vnd.databricks.v1+notebook cell.metadata.application/vnd.databricks.v1+cell" $(NOTEBOOKS)

# The bundle on your workspace, end to end: validate, deploy, run the lifecycle job at SMOKE_ROWS impressions (each
# task's result and the run's URL), then tear down what it made. Needs the Databricks CLI, authenticated.
databricks-smoke: $(STAMP)
	$(BIN)/python -m tools.smoke --target $(TARGET) --rows $(SMOKE_ROWS)

# --allow-root: containers, cloud workstations and devcontainers run as root, where JupyterLab otherwise refuses to start.
# Kernels talk to the server over local IPC sockets, not unencrypted TCP ports (which ipykernel warns about).
# The kernels are clients of one Spark Connect server, started by the first notebook and stopped when the lab stops.
lab: $(STAMP) $(JARS) java
	trap '$(BIN)/python -m utils.local.engine stop "$(STATE_DIR)"' EXIT; \
	$(BIN)/jupyter lab --ip 127.0.0.1 --KernelManager.transport=ipc $(if $(filter 0,$(shell id -u)),--allow-root) notebooks

stop: $(STAMP)
	$(BIN)/python -m utils.local.engine stop "$(STATE_DIR)"

hooks: $(STAMP)
	$(BIN)/pre-commit install

# The MLflow UI on $(STATE_DIR)/mlflow (SQLite store mlflow.db, artifacts/), announced once /health answers;
# Ctrl-C stops it. Port 5000 taken (e.g. macOS AirPlay): make ui UI_PORT=5001.
UI_PORT ?= 5000
UI_TIMEOUT ?= 180
ui: $(STAMP)
	@$(BIN)/python -m utils.ui --port $(UI_PORT) --state-dir "$(STATE_DIR)" --timeout $(UI_TIMEOUT)

# ENDPOINTS="http://127.0.0.1:PORT ..." probes endpoints started elsewhere (05 stops its own when it ends).
# Stops the engine afterwards when it started one; an engine already running (the lab's, say) is left running.
dashboard: $(STAMP) $(JARS)
	@was=$$($(BIN)/python -m utils.local.engine status "$(STATE_DIR)"); \
	$(BIN)/python -m utils.dashboard $(foreach u,$(ENDPOINTS),--endpoint $(u)); rc=$$?; \
	case "$$was" in running:*) ;; *) $(BIN)/python -m utils.local.engine stop "$(STATE_DIR)" >/dev/null;; esac; exit $$rc

# The benchmark extra (Evidently) on top of the lock; `uv pip sync` of the lock removes it again, hence the stamp chain.
$(BENCH_STAMP): $(STAMP) bench/requirements-bench.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r bench/requirements-bench.txt -c requirements.lock
	@touch $(BENCH_STAMP)

bench-env: $(BENCH_STAMP)

# One lock for every platform and for Python 3.11 and 3.12 (markers say which line applies where).
lock: $(STAMP)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra spark --extra dev --universal --python-version 3.11 \
	  --custom-compile-command "make lock" -o requirements.lock

bench-lock: $(STAMP)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra spark --extra bench --universal --python-version 3.11 -c requirements.lock \
	  $$(sed -n 's/^\([A-Za-z0-9._-]*\)==.*/--no-emit-package \1/p' requirements.lock) \
	  --custom-compile-command "make bench-lock" -o bench/requirements-bench.txt

bench: $(BENCH_STAMP) $(JARS) java
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

# With MLOPS_STATE_DIR set, only that state folder goes (everything of that state lives in it); never /, $HOME or the repo.
# The local Spark engine of each state folder that goes is stopped first (as `make stop`), so no server outlives its
# folder; without .venv no engine was started. On Databricks, `python -m utils.teardown` is the counterpart.
clean:
ifneq ($(MLOPS_STATE_DIR),)
	@case "$(STATE_DIR)" in /|"$(HOME)"|"$(CURDIR)") echo "refusing to delete MLOPS_STATE_DIR=$(STATE_DIR)"; exit 1;; esac
	-@test ! -x $(BIN)/python || $(BIN)/python -m utils.local.engine stop "$(STATE_DIR)"
	rm -rf "$(STATE_DIR)"
else
	-@test ! -x $(BIN)/python || for state in "$(STATE_DIR)" "$(abspath $(TEST_STATE))"; do $(BIN)/python -m utils.local.engine stop "$$state"; done
	rm -rf .lakehouse $(TEST_STATE) executed reports data/raw/*.csv data/raw/*.json data/raw/*.jsonl notebooks/kernel-ipc-*
endif

# What a Databricks runtime lacks or must pin (the notebooks' first cell and the bundle's serverless jobs install it),
# resolved for Python 3.12 with DBR 17.3 LTS ML's pre-installed packages held (constraints/), then checked against
# serverless environment 4's. Needs the package index; tests/code/test_databricks_requirements.py checks the result offline.
.PHONY: requirements-databricks
requirements-databricks: $(STAMP)
	$(BIN)/python constraints/compile_requirements.py --uv $(BIN)/uv
