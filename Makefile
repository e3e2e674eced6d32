# edge-daemon: the two commands of the README are `make demo` and `make test`.
# Both set up everything they need on a fresh Debian/Ubuntu machine (root or sudo for apt-get).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SRC    := edge_daemon tests scripts

.PHONY: setup system assets demo test lint bench clean

$(STAMP): pyproject.toml
	scripts/setup-system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,export,quant,opencv,analytics,openvino,gstreamer]'
	# Type stubs of the TensorRT 10.13 Python API, for mypy. --no-deps: its dependencies are NVIDIA's
	# placeholder wheels that download the real libraries from a host outside the package registries.
	$(BIN)/pip install -q --no-deps 'tensorrt-stubs==10.13.0.35.1'
	$(BIN)/python scripts/install_typings.py
	touch $(STAMP)

assets: $(STAMP)
	$(BIN)/python scripts/fetch_assets.py

setup: $(STAMP) assets

# The main job: the daemon on the demo clip (CPU, ONNX Runtime) -> local mosquitto -> a subscriber.
demo: setup
	scripts/demo.sh

# Everything CI runs: lint, format, types, layer contracts (import-linter), the whole test suite.
test: setup lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Throughput and latency vs Ultralytics and the bare engine (figures for docs/benchmarks.md).
bench: setup
	scripts/bench.sh

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
