# Two commands matter: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test lint typecheck unit install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the whole backup -> loss -> restore cycle against an embedded moto server.
demo: $(STAMP)
	$(PY) demo/demo.py

## Lint, type-check and run the whole test suite.
test: $(STAMP) lint typecheck deploy-lint unit

lint: $(STAMP)
	$(VENV)/bin/ruff check ddb_backup handlers tests benchmarks demo
	$(VENV)/bin/ruff format --check ddb_backup handlers tests benchmarks demo

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(TOOLS_VENV) deploy/.tools build dist *.egg-info

# --- Deployment (deploy/): the Lambda zip and the checks CI runs on the infrastructure code.
.PHONY: package deploy-check deploy-lint

## Build build/ddb-backup-lambda.zip (package + handlers + deps for the Lambda platform).
package: $(STAMP)
	$(PY) deploy/build_lambda.py

# Pinned tools, each installed once into its own ignored folder: checkov's dependencies
# conflict with the project's (python-hcl2 among them), so it gets its own venv.
CHECKOV_VERSION       = 3.3.30
ASL_VALIDATOR_VERSION = 4.0.0
TOOLS_VENV            = .venv-tools
CHECKOV_STAMP         = $(TOOLS_VENV)/.checkov-$(CHECKOV_VERSION)
ASL_STAMP             = deploy/.tools/.asl-validator-$(ASL_VALIDATOR_VERSION)

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

$(ASL_STAMP):
	mkdir -p deploy/.tools
	npm install --prefix deploy/.tools --no-audit --no-fund --no-save --silent asl-validator@$(ASL_VALIDATOR_VERSION)
	touch $@

## Validate the state machines and scan the Terraform module with checkov.
## (`make test` runs this; tests/test_deploy.py runs with the rest of the suite.)
deploy-lint: $(STAMP) $(CHECKOV_STAMP) $(ASL_STAMP)
	$(PY) deploy/render_asl.py build/asl
	deploy/.tools/node_modules/.bin/asl-validator --json-path build/asl/backup.asl.json --json-path build/asl/restore.asl.json
	$(TOOLS_VENV)/bin/checkov --directory deploy/terraform --framework terraform --quiet --compact --skip-download

## deploy-lint plus the Terraform invariants and state-machine runs of tests/test_deploy.py.
deploy-check: deploy-lint
	$(PY) -m pytest -q -p no:cacheprovider tests/test_deploy.py
