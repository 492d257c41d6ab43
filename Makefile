# lossbook — `make run NOTEBOOK=dpo_displacement` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
# Extra pip options for the torch install, e.g. TORCH_PIP="--index-url https://download.pytorch.org/whl/cu124"
TORCH_PIP ?=
NOTEBOOK ?=
PROFILE ?= default
PARAMS ?=
BOOK_PROFILE ?=
SITE_DIR ?= site
BOOK_PORT ?= 8000
BIN := $(VENV)/bin
STAMP := $(VENV)/.lossbook-installed
LAB_STAMP := $(VENV)/.lossbook-lab-installed
SERVER_HOST ?= 127.0.0.1
SERVER_PORT ?= 5050
PG_PORT ?= 5433

export CUBLAS_WORKSPACE_CONFIG ?= :4096:8
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR ?= false
export PYTHONWARNINGS ?= ignore::FutureWarning

.PHONY: setup run list lab ui test lint report book book-run book-serve sweep server clean distclean help
help:
	@echo "make run NOTEBOOK=<name> [PROFILE=smoke|default|full] [PARAMS=\"seed=3 epochs=5\"]"
	@echo "make test | list | lab | ui | report | lint | clean | distclean"
	@echo "make sweep NOTEBOOK=<name> GRID=\"beta=0.05,0.1 seed=0,1\" [WORKERS=2] [ADDRESS=ray://...] | server [SERVER_HOST=0.0.0.0]"
	@echo "make book [BOOK_PROFILE=smoke] | book-run [PROFILE=...] | book-serve [BOOK_PORT=8000]   (the book site, site/)"

setup: $(STAMP)

# torch first, pinned, so no other package drags in a newer one; then the package with pinned versions.
# Each step says what it does; pip shows what it downloads, with its progress bar on a terminal (torch alone is
# several hundred MB).
$(STAMP): pyproject.toml requirements/constraints.txt
	@echo "setup [1/5] virtual environment $(VENV) (from $(PYTHON))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "setup [2/5] upgrading pip"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@echo "setup [3/5] torch $(TORCH_VERSION): the largest download, a few minutes on a slow link"
	@$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on $(TORCH_PIP) "torch==$(TORCH_VERSION)"
	@echo "setup [4/5] lossbook and its pinned dependencies (mlflow, papermill, jupyter, ...)"
	@$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on "torch==$(TORCH_VERSION)" \
		-e ".[dev]" -c requirements/constraints.txt
	@echo "setup [5/5] Jupyter kernel 'lossbook'"
	@$(BIN)/python -m ipykernel install --sys-prefix --name lossbook --display-name "Python (lossbook)" >/dev/null
	@touch $(STAMP)
	@echo "set-up done: $(VENV) (torch $(TORCH_VERSION)), Jupyter kernel 'lossbook'"

run: $(STAMP)
	@test -n "$(NOTEBOOK)" || { echo "usage: make run NOTEBOOK=<name> [PROFILE=...] [PARAMS=\"k=v ...\"]; notebooks:"; $(BIN)/lossbook list; exit 2; }
	$(BIN)/lossbook run $(NOTEBOOK) --profile $(PROFILE) $(PARAMS)

list: $(STAMP)
	@$(BIN)/lossbook list

# Ray: WORKERS points at once (default all CPUs; 0 = one by one without Ray), ADDRESS=auto|ray://head:10001 a cluster.
sweep: $(STAMP)
	@test -n "$(NOTEBOOK)" -a -n "$(GRID)" || { echo 'usage: make sweep NOTEBOOK=<name> GRID="beta=0.05,0.1 seed=0,1,2" [PROFILE=...] [WORKERS=2] [ADDRESS=ray://...]'; exit 2; }
	$(BIN)/lossbook sweep $(NOTEBOOK) --profile $(PROFILE) --grid "$(GRID)" $(if $(WORKERS),--workers $(WORKERS)) $(if $(ADDRESS),--address $(ADDRESS))

# A team tracking server: PostgreSQL (data in .server/postgres, port PG_PORT on 127.0.0.1) behind mlflow on
# SERVER_HOST:SERVER_PORT, artifacts in .server/artifacts served by mlflow. Others: MLFLOW_TRACKING_URI=http://<host>:<port>.
server: $(STAMP)
	$(BIN)/python -m lossbook.server --dir $(CURDIR)/.server --host $(SERVER_HOST) --port $(SERVER_PORT) --pg-port $(PG_PORT)

report: $(STAMP)
	$(BIN)/lossbook report $(if $(BOOK_PROFILE),--profile $(BOOK_PROFILE))

# The book site: site/ from the store (latest finished non-smoke run per notebook; BOOK_PROFILE=smoke shows smoke
# runs instead). book-run runs every notebook under PROFILE first and shows those runs.
book: $(STAMP)
	$(BIN)/lossbook book --out $(SITE_DIR) $(if $(BOOK_PROFILE),--profile $(BOOK_PROFILE))

book-run: $(STAMP)
	$(BIN)/lossbook book --run --profile $(PROFILE) --out $(SITE_DIR)

book-serve:
	@test -f $(SITE_DIR)/index.html || { echo "no $(SITE_DIR)/index.html yet: make book first"; exit 2; }
	@echo "the book at http://127.0.0.1:$(BOOK_PORT)/ (Ctrl-C stops it)"
	$(PYTHON) -m http.server $(BOOK_PORT) --bind 127.0.0.1 --directory $(SITE_DIR)

$(LAB_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" -e ".[dev,lab]" -c requirements/constraints.txt
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' \
		> $(VENV)/share/jupyter/lab/settings/overrides.json
	@touch $(LAB_STAMP)

lab: $(LAB_STAMP)
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser --notebook-dir $(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root)

ui: $(STAMP)
	@echo "MLflow UI at http://127.0.0.1:5000 ; each run's summary prints its experiment's address with the book's columns"
	$(BIN)/mlflow server --backend-store-uri sqlite:///$(CURDIR)/mlflow.db \
		--default-artifact-root $(CURDIR)/mlartifacts --host 127.0.0.1 --port 5000 --workers 1

test: $(STAMP)
	TQDM_DISABLE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check lib tests notebooks benchmarks

clean:
	rm -rf runs mlartifacts mlflow.db .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path "./$(VENV)/*" -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
