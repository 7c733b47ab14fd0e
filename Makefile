# The newcomer's contract: `make serve` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SOCKET ?= ./flagsock.sock

.PHONY: serve test bench bench-engine bench-client soak clean lint

# editable_mode=compat: the checkout goes on sys.path through a .pth file; the default
# import-hook finder would cost every start of the agent 20 ms.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,openfeature]' \
		--config-settings editable_mode=compat
	touch $(STAMP)

## serve: run the agent on examples/ with the socket ./flagsock.sock (Ctrl-C stops it)
serve: $(STAMP)
	$(BIN)/flagsock serve --flags examples/flags.json --flags examples/targeting.flagd.json \
		--write-to examples/flags.json --socket $(SOCKET)

## test: the whole suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

## bench: the agent against a bare Trio server, figures as ratios (see bench/RESULTS.md)
bench: $(STAMP)
	$(BIN)/python bench/bench_server.py

bench-engine: $(STAMP)
	$(BIN)/python bench/bench_engine.py

bench-client: $(STAMP)
	$(BIN)/python bench/bench_client.py

## soak: ten minutes of load with reloads and writes
soak: $(STAMP)
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info $(SOCKET)
