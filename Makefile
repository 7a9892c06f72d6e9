# Tactline: the two commands a new machine needs are `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test bench soak lint rules-test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

run: $(STAMP)
	$(BIN)/tactline serve

test: $(DEV_STAMP)
	$(BIN)/tactline rules lint rules
	$(BIN)/tactline rules test rules
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(BIN)/python bench/coach.py
	$(BIN)/python bench/relay.py
	$(BIN)/python bench/coaching.py
	$(BIN)/python bench/load.py
	@$(BIN)/python -c "from server.pages import widget_gzip_size as s; print(f'widget.js: {s()} bytes gzipped (limit 15360)')"

# Ten minutes at a steady load; the last lines compare memory at the first and last minute.
soak: $(DEV_STAMP)
	$(BIN)/python bench/load.py --soak-minutes 10 --conversations 400 --connections 2000

lint: $(DEV_STAMP)
	$(BIN)/ruff check coach server tests bench
	$(BIN)/mypy --strict coach server

clean:
	rm -rf $(VENV) var .pytest_cache
