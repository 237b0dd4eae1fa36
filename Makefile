# Two commands for a fresh clone: `make demo` (set up + run the main job) and `make test`.
# Each creates its own virtual environment in .venv; nothing needs installing by hand first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNS ?= runs
DEMO ?= full  # `make demo DEMO=tiny`: the same steps on tiny models, in seconds

.PHONY: setup demo test lint typecheck fmt clean executorch

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned to 2.13.0 in the `train` extra: pip takes the local CPU build, not a CUDA one
	$(BIN)/python -m pip install -q -e '.[cpu,train,dev]'
	touch $@

setup: $(BIN)/.installed

# optional: ExecuTorch for the benchmark peer (benchmarks/executorch_peer.py); not part of setup
executorch: setup
	$(BIN)/python -m pip install -q -e '.[executorch]'

demo: setup
	DEMO=$(DEMO) bash scripts/demo.sh $(RUNS)

lint: setup
	$(BIN)/ruff check edgekit tests benchmarks
	$(BIN)/ruff format --check edgekit tests benchmarks

fmt: setup
	$(BIN)/ruff format edgekit tests benchmarks
	$(BIN)/ruff check --fix edgekit tests benchmarks

typecheck: setup
	$(BIN)/mypy edgekit

test: lint typecheck
	$(BIN)/python -m pytest -m "not slow" -q

clean:
	rm -rf $(VENV) $(RUNS) dist .mypy_cache .ruff_cache .pytest_cache
