# gim — the two commands: `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := target/release/gim
export RAYON_NUM_THREADS ?= 2

.PHONY: all build venv test cargo-test demo clean

all: build

build:
	$(CARGO) build --release --locked

# The project's own Python environment for Jupyter tools (pinned in requirements.txt).
venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

cargo-test: build
	$(CARGO) test --release --locked

test: cargo-test

demo: build
	$(BIN) logits --model ../shared/fixtures/models/llama --prompt "Paris is the capital"

clean:
	rm -rf target $(VENV) out
