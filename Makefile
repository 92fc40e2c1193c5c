# Every target sets itself up: a fresh clone needs only Python 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench protos lint typecheck clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/python -m aliecs.demo

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

protos: setup
	$(BIN)/python -m aliecs.protos_build

lint: setup
	$(BIN)/ruff check aliecs actors tests bench
	$(BIN)/ruff format --check aliecs actors tests bench
	$(BIN)/mypy

typecheck: setup
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info
