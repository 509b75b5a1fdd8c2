# psr-reward: `make run` and `make test` are all a fresh machine needs.
# Setup is cached: stamps are only redone when their inputs change.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS := .deps
ORT_LIB := $(DEPS)/libonnxruntime.so
FIXTURES := tests/fixtures/generated
FIXTURE_SCRIPTS := $(shell find tests/fixtures -name '*.py' -not -path '*/generated/*' 2>/dev/null)
PORT ?= 8080
PSR_MODELS ?= models/default.toml
CARGO_TEST_THREADS ?= 2

export PSR_ORT_LIBRARY := $(abspath $(ORT_LIB))

.PHONY: all setup fixtures build run test test-rust test-python lint bench clean

all: build

## setup: Python tools and the ONNX Runtime library (pinned in requirements.txt).
setup: $(VENV)/.stamp $(ORT_LIB)

$(VENV)/.stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The shared library shipped inside the pinned onnxruntime wheel (needs only libc/libstdc++).
$(ORT_LIB): $(VENV)/.stamp
	mkdir -p $(DEPS)
	cp "$$($(PY) -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.*")))[-1])')" $@.tmp
	mv $@.tmp $@

## fixtures: generated ONNX test models, tokenizer and golden images (deterministic).
fixtures: $(FIXTURES)/.stamp

$(FIXTURES)/.stamp: $(VENV)/.stamp $(FIXTURE_SCRIPTS)
	$(PY) tests/fixtures/make_fixtures.py $(FIXTURES)
	$(PY) tests/fixtures/make_resize_cases.py $(FIXTURES)
	touch $@

build: setup
	cargo build --release

## run: set up, build, and serve the default model set on $(PORT).
run: setup fixtures build
	PORT=$(PORT) PSR_MODELS=$(PSR_MODELS) ./target/release/psr-reward serve

## test: every Rust and Python test.
test: setup fixtures test-rust test-python

test-rust:
	cargo test --all-targets -- --test-threads=$(CARGO_TEST_THREADS)

test-python:
	PSR_FIXTURES_DIR=$(abspath $(FIXTURES)) $(PY) -m pytest -q tests/python

## lint: formatting and lints (Rust and Python).
lint: setup
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo check --quiet --features cuda,tensorrt
	$(VENV)/bin/ruff check tests
	$(VENV)/bin/ruff format --check tests

clean:
	cargo clean
	rm -rf $(VENV) $(DEPS) $(FIXTURES)
