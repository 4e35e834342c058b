# Entry points, each setting itself up on a fresh machine:
#   make repro  — create .venv if missing, install the pinned project, run `dvc repro`, then
#                 say which committed outputs it changed and how far the metrics moved
#   make test   — the same set-up, then the fast tier (under 3 min on 2 cores): every unit test,
#                 one tiny `dvc repro`, no servers; deselects the markers e2e, server and slow
#   make test-full — the same set-up, then .ci/install-test-tools (PostgreSQL's programs,
#                 actionlint) and every test (what .ci/run runs; 20-40 min on 2 cores)
#   make server — the same set-up, then the team's MLflow tracking server on PostgreSQL
#                 (docs/team.md); Ctrl-C stops it
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: repro test test-full setup server clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The venv's bin first on PATH: dvc runs each stage's `python` from there.
repro: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@$(BIN)/python -m unmix.reports.repro_summary
	@echo "MLflow: $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db, then open $(TRAINING_VIEW)"

# MLflow 3's UI opens an experiment in its GenAI view unless the URL asks for model training.
TRAINING_VIEW = http://127.0.0.1:$(MLFLOW_PORT)/\#/experiments?workflowType=machine_learning

# Markers (pyproject.toml): e2e runs the real pipeline or stage subprocess chains, server starts
# PostgreSQL or an MLflow server, slow is long for another reason. PYTEST_ARGS adds options.
FAST := not e2e and not server and not slow
PYTEST_ARGS ?=

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "$(FAST)" --durations=15 $(PYTEST_ARGS)

test-full: $(STAMP)
	.ci/install-test-tools
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest --durations=15 $(PYTEST_ARGS)

# MLFLOW_HOST=0.0.0.0 to serve other machines; SERVER_ARGS for the rest, e.g.
# SERVER_ARGS='--workers 2 -- --allowed-hosts mlflow.lan'. MLFLOW_BACKEND_STORE_URI (environment)
# points it at an existing PostgreSQL instead of the cluster in .mlflow-server/postgres.
# ARTIFACTS=s3://BUCKET/PREFIX keeps the artifacts in S3 instead of .mlflow-server/artifacts,
# with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, for MinIO or another non-AWS store,
# MLFLOW_S3_ENDPOINT_URL in the environment (docs/team.md); the bucket must exist.
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
ARTIFACTS ?=
SERVER_ARGS ?=

server: $(STAMP)
	$(BIN)/python -m unmix.team.server --host $(MLFLOW_HOST) --port $(MLFLOW_PORT) \
		$(if $(ARTIFACTS),--artifacts-destination '$(ARTIFACTS)') $(SERVER_ARGS)

clean-venv:
	rm -rf $(VENV)
