# Two commands a newcomer needs: `make up` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TESTSTAMP := $(VENV)/.installed-test

.PHONY: up test lint typecheck bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

# The test extras include the package itself: one install (and the runtime stamp with it).
$(TESTSTAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@ $(STAMP)

up: $(STAMP)
	$(BIN)/sluiceway up

# Two pytest workers (pytest-xdist), each test file on one of them: most tests wait on
# processes and sockets, so two share a 2-core machine well (tests/README.md, suite time).
test: $(TESTSTAMP)
	bash scripts/install-system-deps.sh
	$(BIN)/ruff check sluiceway tests bench scripts
	$(BIN)/mypy sluiceway
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

bench: $(TESTSTAMP)
	$(BIN)/python bench/ingest.py --keep bench/out/data
	$(BIN)/python bench/query.py --data bench/out/data
	$(BIN)/python bench/es_bulk.py
	$(BIN)/python bench/shutdown.py
	$(BIN)/python bench/agent.py
	$(BIN)/python bench/client.py

clean:
	rm -rf $(VENV) data agent-data
