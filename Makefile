# The newcomer's contract: `make serve` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUN := .run
SOCKET ?= ./flagsock.sock

.PHONY: serve test lint bench bench-engine bench-client bench-events bench-http soak clean

# editable_mode=compat: the checkout goes on sys.path through a .pth file; the default
# import-hook finder would cost every start of the agent 20 ms.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,openfeature,top]' \
		--config-settings editable_mode=compat
	touch $(STAMP)

## serve: run the agent on a scratch copy of examples/ (in .run/, ignored by git), socket ./flagsock.sock
serve: $(STAMP)
	mkdir -p $(RUN)
	cp -n examples/*.json $(RUN)/ 2>/dev/null || true
	$(BIN)/flagsock serve --flags $(RUN)/flags.json --flags $(RUN)/targeting.flagd.json \
		--write-to $(RUN)/flags.json --socket $(SOCKET)

## test: the import contract, lint, then the whole suite
test: $(STAMP) lint
	$(BIN)/python -m pytest -q

## lint: ruff and the layering contract (import-linter)
lint: $(STAMP)
	$(BIN)/ruff check agent protocol tests bench
	$(BIN)/lint-imports

## bench: the agent against a bare Trio server, figures as ratios (see bench/RESULTS.md)
bench: $(STAMP)
	$(BIN)/python bench/bench_server.py

bench-engine: $(STAMP)
	$(BIN)/python bench/bench_engine.py

bench-client: $(STAMP)
	$(BIN)/python bench/bench_client.py

bench-events: $(STAMP)
	$(BIN)/python bench/bench_events.py

## bench-http: OFREP over HTTP against NDJSON evaluate on the same agent; bulk 304 vs 200
bench-http: $(STAMP)
	$(BIN)/python bench/bench_http.py

## soak: ten minutes of load with reloads and writes
soak: $(STAMP)
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) $(RUN) .pytest_cache .hypothesis *.egg-info $(SOCKET)
