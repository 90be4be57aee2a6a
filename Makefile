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

.PHONY: venv demo test test-fast lint clean eval

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/bodypix-gimp segment samples/astronaut.jpg --out out/demo --json --force
	@echo "Outputs: out/demo/astronaut.person.png, .parts.png, .overlay.png, .json"

# Everything: fast suite, slow suites (evaluation subset, benchmarks), the TF.js reference, real GIMP.
test: venv lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

# The quick local loop: no real GIMP, no reference, no slow suites.
test-fast: venv
	$(BIN)/pytest -q -m "not slow and not gimp and not reference" $(PYTEST_ARGS)

# The full evaluation (README "Evaluation"): every configuration on every eval set, ~30-60 min.
eval: venv
	$(BIN)/bodypix-gimp eval ../shared/eval/human_seg_300 ../shared/eval/p3m_demo_pseudo \
		../shared/eval/cihp_samples ../shared/eval/seed/jim.jpg --methods --out out/eval

lint: venv
	$(BIN)/ruff check core gimp_plugin installer tests

clean:
	rm -rf $(VENV) out .cache .pytest_cache
