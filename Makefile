# Two commands matter: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo docs test lint typecheck unit install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the whole backup -> loss -> restore cycle against an embedded moto server.
demo: $(STAMP)
	$(PY) demo/demo.py

## Regenerate the captured command-line output in docs/ (never pasted by hand).
docs: $(STAMP)
	$(PY) demo/cli_walkthrough.py > docs/cli-walkthrough.md

## Lint, type-check and run the whole test suite.
test: $(STAMP) lint typecheck deploy-lint unit

lint: $(STAMP)
	$(VENV)/bin/ruff check ddb_backup handlers tests benchmarks demo deploy/checks
	$(VENV)/bin/ruff format --check ddb_backup handlers tests benchmarks demo deploy/checks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(TOOLS_VENV) deploy/.tools build dist *.egg-info

# --- Deployment (deploy/): the Lambda zip and the checks CI runs on the infrastructure code.
.PHONY: package deploy-check deploy-lint provider-schemas

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

# The AWS provider's schema for deploy/checks/terraform_schema.py, from @cdktf/provider-aws
# (npm, generated from the provider): 19.1.0 is hashicorp/aws 5.32.0, the floor of
# versions.tf; 21.22.1 is 6.25.0, the newest 6.x it had. The package is ~400 MB
# unpacked: only a compact JSON per provider version is kept (deploy/checks/provider_schema.py).
PROVIDER_AWS_FLOOR  = 19.1.0
PROVIDER_AWS_NEWEST = 21.22.1
SCHEMA_DIR          = deploy/.tools/provider-schemas
SCHEMA_STAMP        = $(SCHEMA_DIR)/.cdktf-$(PROVIDER_AWS_FLOOR)-$(PROVIDER_AWS_NEWEST)

$(SCHEMA_STAMP): deploy/checks/provider_schema.py
	rm -rf $(SCHEMA_DIR) && mkdir -p $(SCHEMA_DIR)
	for v in $(PROVIDER_AWS_FLOOR) $(PROVIDER_AWS_NEWEST); do \
	  npm pack --silent --pack-destination deploy/.tools @cdktf/provider-aws@$$v >/dev/null && \
	  $(PYTHON) -m deploy.checks.provider_schema deploy/.tools/cdktf-provider-aws-$$v.tgz $(SCHEMA_DIR) && \
	  rm -f deploy/.tools/cdktf-provider-aws-$$v.tgz || exit 1; \
	done
	touch $@

## Build the provider schemas the Terraform check reads (tests run it when they are missing).
provider-schemas: $(SCHEMA_STAMP)

## Validate the state machines, check the Terraform module against the AWS provider's
## schema and the IAM policies against AWS's authorization data, scan it with checkov.
## (`make test` runs this; tests/deploy/ runs with the rest of the suite.)
deploy-lint: $(STAMP) $(CHECKOV_STAMP) $(ASL_STAMP) $(SCHEMA_STAMP)
	$(PY) deploy/render_asl.py build/asl
	deploy/.tools/node_modules/.bin/asl-validator --json-path build/asl/backup.asl.json --json-path build/asl/restore.asl.json
	$(PY) -m deploy.checks.terraform_schema
	$(PY) -m deploy.checks.iam
	$(TOOLS_VENV)/bin/checkov --directory deploy/terraform --framework terraform --quiet --compact --skip-download

## deploy-lint plus the Terraform invariants, checks and state-machine runs of tests/deploy/.
deploy-check: deploy-lint
	$(PY) -m pytest -q -p no:cacheprovider tests/deploy
