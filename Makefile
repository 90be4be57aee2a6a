# Two entry points for a fresh machine (see README):
#   make demo    set up .venv and segment the sample photo into out/demo/
#   make test    set up .venv and run every test suite (what CI runs)
# Model source: BODYPIX_MODELS (default ../shared/models when it exists).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_MODELS := $(abspath ../shared/models)
BODYPIX_MODELS ?= $(if $(wildcard $(SHARED_MODELS)),$(SHARED_MODELS),)
export BODYPIX_MODELS
PYTEST_ARGS ?=

.PHONY: venv demo test test-fast lint clean gimp-setup bench-gimp readme-image bench bench-convert bench-batch eval mutation

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/bodypix-gimp segment samples/astronaut.jpg --out out/demo --json --force
	@echo "Outputs: out/demo/astronaut.person.png, .parts.png, .overlay.jpg, .json, manifest.jsonl"

# Everything: fast suite, slow suites (evaluation subset, benchmarks), the TF.js reference, real GIMP.
test: venv lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

# The quick local loop: no real GIMP, no reference, no slow suites.
test-fast: venv
	$(BIN)/pytest -q -m "not slow and not gimp and not reference" $(PYTEST_ARGS)

# Speed and peak memory per model and photo size, next to TF.js body-pix wasm (reports/bench.json, .md).
bench: venv
	$(BIN)/bodypix-gimp bench --out reports

# RVM TF.js -> ONNX: conversion time, converted vs reference file speed and outputs (reports/bench_convert.*).
bench-convert: venv
	$(BIN)/python -m bodypix_gimp.evaluate.bench_convert --out reports

# Photos per second of `segment` over many photos: local engine and Ray with 1 and 2 workers,
# at 2 and 12 MP; wall per photo vs segment()'s total (reports/bench_batch.json, .md; ~10 min).
bench-batch: venv
	$(BIN)/python -m bodypix_gimp.batch.bench --out reports

# Real GIMP 3.0.4 (Debian 13 rootfs in .cache/gimp3) and 3.2.6 (Debian sid rootfs in
# .cache/gimp3-sid); needs root. The gimp tests call the setup themselves (both versions, or
# BODYPIX_GIMP_VERSIONS=3.2); these targets are for the benchmark of issue 3 and the README picture.
gimp-setup:
	tests/gimp/setup-gimp.sh 3.0
	tests/gimp/setup-gimp.sh 3.2

bench-gimp: venv
	$(BIN)/python tests/gimp/bench.py

readme-image: venv
	$(BIN)/python tests/gimp/readme_image.py

# The full evaluation (README "Evaluation"): every configuration on every eval set, ~30-60 min.
eval: venv
	$(BIN)/bodypix-gimp eval ../shared/eval/human_seg_300 ../shared/eval/p3m_demo_pseudo \
		../shared/eval/cihp_samples ../shared/eval/seed/jim.jpg --methods --out out/eval

lint: venv
	$(BIN)/ruff check core gimp_plugin installer tests tools

clean:
	rm -rf $(VENV) out .cache .pytest_cache

# One-line mutants in scratch copies, each against its targeted tests (docs/testing.md; ~1 h on 2 cores).
mutation: venv
	$(BIN)/python tools/mutation.py --out reports
