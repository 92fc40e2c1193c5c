# Every target sets itself up: a fresh clone needs only Python 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup browser demo gui test bench protos lint typecheck clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/python -m aliecs.demo

# The web page's tests drive Debian's Chromium (never a browser downloaded by playwright): installed
# with apt when missing (CI runs as root on a clean machine).
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# A core with two simulated nodes and the web page; it prints the page's address. Ctrl-C stops it.
GUI_PORT ?= 8080
gui: setup
	$(BIN)/aliecs-core --nodes 2 --http-port $(GUI_PORT) $(GUI_ARGS)

test: setup browser
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

# The demo's copypush cycle with the core as a Mesos framework on an emulated three-agent cluster
# (tests/mesos_emulator); exits non-zero if a step fails or a process is left running.
demo-mesos: setup
	$(BIN)/python -m aliecs.mesos.demo
