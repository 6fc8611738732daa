# nbp: two commands for a newcomer — `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-stamp
export BENTOML_DO_NOT_TRACK := True
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export FEAST_USAGE := False

.PHONY: setup demo test bench clean-workspace help

help:
	@echo "make demo   set up, then run the main job on a simulated bank"
	@echo "make test   set up, then run the tests"
	@echo "make setup  create the environment in $(VENV) only"
	@echo "make bench  run the benchmarks (writes docs/benchmarks.md)"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (nbp needs Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)
	@echo "environment ready: $(BIN)/nbp"

DEMO_DIR ?= demo
# The whole chain on the embedded default: a simulated county bank of about 20,000
# customers (configs/base.yaml), ingested, features built and published to Feast,
# one model per product trained and gated in MLflow (mlruns/), every candidate scored.
demo: setup
	$(BIN)/nbp simulate --out $(DEMO_DIR)/bank
	$(BIN)/nbp ingest $(DEMO_DIR)/bank/export
	$(BIN)/nbp retrain
	@echo
	@echo "demo done: export in $(DEMO_DIR)/bank/export, scores in outputs/scores/latest.parquet,"
	@echo "models in mlruns/ (.venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db)"

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m benchmarks.run_all
