# HimHIS: `make run` starts the embedded default, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench install clean-var

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/himhis db upgrade
	$(BIN)/himhis seed-demo --if-empty
	$(BIN)/himhis mllp & mllp=$$!; trap 'kill $$mllp 2>/dev/null' EXIT INT TERM; $(BIN)/himhis serve

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m bench
	$(BIN)/python -m bench.himparivar

clean-var:
	rm -rf var/*.db var/*.db-wal var/*.db-shm
