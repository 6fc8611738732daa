# nbp: two commands for a newcomer — `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-stamp
export BENTOML_DO_NOT_TRACK := True
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export FEAST_USAGE := False

.PHONY: setup demo test test-fast lint bench clean-workspace help

help:
	@echo "make demo       set up, then run the main job on a simulated bank"
	@echo "make test       set up, then run the tests"
	@echo "make test-fast  the unit tier only (no test marked slow or integration): the inner loop"
	@echo "make lint       set up, then ruff check and ruff format --check (CI fails on either)"
	@echo "make setup      create the environment in $(VENV) only"
	@echo "make bench      run the benchmarks (writes docs/benchmarks.md)"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (nbp needs Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)
	@echo "environment ready: $(BIN)/nbp"

DEMO_DIR   ?= demo
DEMO_PORT  ?= 3000
DEMO_SERVE ?= 1
# The whole chain on the embedded default: a simulated county bank of about 20,000
# customers (configs/base.yaml), ingested, features built and published to Feast,
# the simulator's randomised campaigns imported, one model per product trained and gated in
# MLflow (mlruns/) with an uplift model where the campaigns allow, every candidate scored,
# target lists written to $(DEMO_DIR)/targets/, the campaigns' lift to $(DEMO_DIR)/campaigns/, the
# data-quality report to $(DEMO_DIR)/quality/, a saved segment to $(DEMO_DIR)/segments/ (the month's
# tier migration to outputs/tiers/, by `nbp retrain`), then the service with the staff, campaigns and quality pages
# (Ctrl-C stops it; `make demo DEMO_SERVE=0` skips it).
demo: setup
	$(BIN)/nbp simulate --out $(DEMO_DIR)/bank
	$(BIN)/nbp ingest $(DEMO_DIR)/bank/export
	@# the simulator's randomised campaigns, for the uplift models; a second demo finds them recorded
	$(BIN)/nbp campaign import $(DEMO_DIR)/bank/campaigns/*.csv --log-level warning \
	  || echo "  (campaigns kept as recorded before)"
	$(BIN)/nbp retrain
	@mkdir -p $(DEMO_DIR)/targets
	@for p in consumer business_flow tax_linked; do \
	  $(BIN)/nbp targets --product $$p --top 500 --out $(DEMO_DIR)/targets/$$p.xlsx --log-level warning \
	    || echo "  ($$p: no list, see the message above)"; \
	done
	@# what the randomised campaigns achieved (imported from the simulator's history)
	$(BIN)/nbp campaign report --out $(DEMO_DIR)/campaigns --log-level warning
	@# completeness of the customer fields per branch and manager (recorded by every ingest) and the to-complete lists
	$(BIN)/nbp quality report --out $(DEMO_DIR)/quality/quality_report.xlsx --log-level warning
	@# a saved segment (客群, configs/segments/): its count by branch and tier, and its workbook
	$(BIN)/nbp segment --name payroll_public_no_consumer --out $(DEMO_DIR)/segments/payroll_public_no_consumer.xlsx \
	  --log-level warning
	@echo
	@echo "demo done:"
	@echo "  bank export      $(DEMO_DIR)/bank/export  (oracle beside it: $(DEMO_DIR)/bank/oracle)"
	@echo "  target lists     $(DEMO_DIR)/targets/*.xlsx"
	@echo "  campaign report  $(DEMO_DIR)/campaigns/  (lift against the control groups; docs/campaigns.md)"
	@echo "  quality report   $(DEMO_DIR)/quality/  (completeness per field, branch, manager; to-complete lists; docs/quality.md)"
	@echo "  segment          $(DEMO_DIR)/segments/  (nbp segment list; docs/segments.md)"
	@echo "  value tiers      outputs/tiers/migration-*.xlsx  (tier per branch, who moved up or down; docs/tiers.md)"
	@echo "  scores           outputs/scores/latest.parquet"
	@echo "  models and runs  mlruns/  (.venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db)"
	@if [ "$(DEMO_SERVE)" = "1" ]; then \
	  token=demo-$$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n'); \
	  echo "  staff page       http://127.0.0.1:$(DEMO_PORT)/staff/"; \
	  echo "  campaigns page   http://127.0.0.1:$(DEMO_PORT)/campaigns/"; \
	  echo "  quality page     http://127.0.0.1:$(DEMO_PORT)/quality/"; \
	  echo "  demo token       $$token  (role marketing; sign in with it on the page)"; \
	  echo "  Ctrl-C stops the service."; \
	  NBP_TOKENS=$$token:marketing exec $(BIN)/nbp serve --port $(DEMO_PORT); \
	fi

test: setup
	$(BIN)/python -m pytest -q

# The unit tier: no Feast apply, no MLflow, no server, no browser, no CLI chain (markers in pyproject.toml).
# The five slowest tests are listed, so a test that belongs in the slow tier shows up.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not integration" --durations=5

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m benchmarks.run_all
