# The two commands of the README:
#   make study   set everything up, then run the default study (`kedro run`)
#   make test    set everything up, then lint and run the test suite (what CI runs)
# Both are idempotent: the virtual environment is rebuilt only when requirements change.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
STACKS := $(VENV)/provider-stacks
STACKS_STAMP := $(STACKS)/.setup-stamp

export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export TF_USE_LEGACY_KERAS := 1
export HF_HUB_OFFLINE := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup study test lint system-data clean-results

setup: $(STAMP) system-data $(STACKS_STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# The provider stacks' own packages (Azure ML's inference server, SageMaker's toolkit on
# TorchServe), each beside the venv in a folder its server puts first on its path.
$(STACKS_STAMP): $(STAMP) scripts/install_provider_stacks.sh
	bash scripts/install_provider_stacks.sh $(BIN)/python $(STACKS)
	touch $(STACKS_STAMP)

# Debian packages: the zoo's datasets (Fashion-MNIST, fortunes, gettext catalogues) and Chromium
# (the tradeoff report is opened headless in the tests).
system-data: $(STAMP)
	bash scripts/install_system_data.sh $(BIN)/python

study: setup
	$(BIN)/kedro run

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest

# Results of runs (never committed); models are rebuilt by `make study`.
clean-results:
	rm -rf data/0[2-8]_*/* mlruns mlflow.db
