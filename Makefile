# Two entry points a new user needs (see README): `make run` and `make test`.
# Both create .venv on first use. TORCH_SPEC pins the CPU wheel that lies on this project's machines;
# elsewhere torch==2.13.0 resolves to the platform's normal build. Never install torchvision.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
export MPLBACKEND := Agg

.PHONY: install run test test-all dagster mlflow-ui bench clean-data

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

## The main job: the whole tiny lineage on the embedded defaults (CPU).
run: install
	PATH="$(abspath $(VENV))/bin:$$PATH" dvc repro

## The test suite (what CI runs).
test: install
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q -m "not slow"

## Everything, slow end-to-end tests included.
test-all: install
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q

## Dagster UI on 127.0.0.1:3000 (DAGSTER_HOME inside the repo).
dagster: install
	mkdir -p .dagster_home && DAGSTER_HOME=$(abspath .dagster_home) $(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000

## MLflow UI on 127.0.0.1:5000 over the embedded sqlite store.
mlflow-ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done
