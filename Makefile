# Everyday targets. Each creates the virtualenv (.venv) on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum setup.py | cut -d' ' -f1)
SAMPLE := samples/vcc-demo/notifications-*.jsonl
OUT ?= demo-out

.PHONY: demo test lint format bench bench-receive notebooks clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)  ## run the batch job on the bundled sample, validated Parquet in $(OUT)/
	$(BIN)/vccflow batch --input '$(SAMPLE)' --output $(OUT)

test: $(STAMP) lint  ## lint, then the whole test suite
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

notebooks: $(STAMP)  ## Jupyter on notebooks/, reading $(OUT)/ (the demo run first if $(OUT)/ has no output)
	$(BIN)/python -m pip install --quiet -e ".[test,notebooks]"
	[ -f $(OUT)/_run_report.json ] || $(BIN)/vccflow batch --input '$(SAMPLE)' --output $(OUT)
	VCCFLOW_OUTPUT="$(abspath $(OUT))" $(BIN)/jupyter lab notebooks/

bench: $(STAMP)  ## vccflow batch vs a DuckDB SQL reference on ~1.5M generated lines (bench/README.md); BENCH_ARGS="--runs 3"
	$(BIN)/python -c 'import duckdb, psutil' 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[test,bench]"
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-receive: $(STAMP)  ## vccflow receive under wrk at 170, 1700 and max requests/s, with the Pub/Sub emulator (bench/README.md); BENCH_ARGS="--runs 3"
	$(BIN)/python -c 'import psutil' 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[test,bench]"
	$(BIN)/python bench/receive.py $(BENCH_ARGS)

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache *.egg-info
