# Two commands do all set-up on a fresh machine (network needed only for the package registries):
#   make lab    create .venv, install, register the kernel, prepare the offline model, open JupyterLab
#   make test   the same set-up, then pytest on tests/ and nbval on every notebook (offline),
#               then the engine's unit tests again under KERAS_BACKEND=jax
#   make bench  benchmarks/bench_cam.py (CAM vs classification vs peers) and notebook timings
# Workshops (docs/WORKSHOP.md):
#   make wheelhouse                  wheels of requirements.txt and this project in wheelhouse/
#   make lab WHEELHOUSE=path         install from that folder only (no network), then JupyterLab
#   make doctor                      one green/red line per pre-flight check; exit 1 if any is red
#   make test-wheelhouse             make wheelhouse, install it into a fresh venv with an isolated
#                                    pip and --no-index, then the doctor there (run by .ci/run)
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
# Offline installs: WHEELHOUSE=path makes the set-up install from that folder only.
WHEELHOUSE ?=
WHEELHOUSE_DIR ?= wheelhouse
WHEELHOUSE_VENV ?= .venv-wheelhouse
ifneq ($(strip $(WHEELHOUSE)),)
# A separate stamp: a later `make test` without WHEELHOUSE still installs the test extras.
STAMP  := $(VENV)/.installed-wheelhouse
endif
# pip that sees no configuration of this machine: no PIP_* variables, no config files, --isolated;
# with --no-index it can find wheels only in the folder it is given.
ISOLATED_PIP = unset $$(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p'); export PIP_CONFIG_FILE=/dev/null

# Offline and quiet by default: tests never touch the network, TensorFlow keeps its logs to itself.
# (Tests draw with Matplotlib's Agg backend: tests/conftest.py. JupyterLab and the saved notebooks
# must not inherit a MPLBACKEND, or kernels skip their inline backend and show no figures.)
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: help setup lab test test-unit test-jax test-notebooks model kernel execute-notebooks \
  bench clean wheelhouse doctor test-wheelhouse

help:
	@echo "make lab    - set up .venv and open the series in JupyterLab"
	@echo "make test   - set up .venv and run every test and notebook, offline"
	@echo "make bench  - time the CAM engine against classification and its peers, and the notebooks"
	@echo "make wheelhouse - wheels for an offline workshop install: make lab WHEELHOUSE=wheelhouse"
	@echo "make doctor - pre-flight check: one green/red line per item, exit status 1 if any is red"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; \
	  sys.exit(0 if (3, 10) <= v <= (3, 12) else "Python 3.10-3.12 is needed, found %d.%d; run make PYTHON=python3.12 ..." % v)'
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-test.txt pyproject.toml | $(BIN)/python
ifeq ($(strip $(WHEELHOUSE)),)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
else
	@test -d "$(WHEELHOUSE)" || { echo "WHEELHOUSE=$(WHEELHOUSE) is not a folder; build one with" \
	  "make wheelhouse (on a machine with network, same OS, CPU and Python minor version)"; exit 1; }
	@$(BIN)/python -c 'import sys, platform; print("installing offline from $(WHEELHOUSE) for", \
	  platform.system(), platform.machine(), "Python %d.%d" % sys.version_info[:2])'
	$(ISOLATED_PIP); $(BIN)/python -m pip --isolated install --quiet --no-index \
	  --find-links "$(abspath $(WHEELHOUSE))" -r requirements.txt
	$(ISOLATED_PIP); $(BIN)/python -m pip --isolated install --quiet --no-index \
	  --find-links "$(abspath $(WHEELHOUSE))" --no-deps -e .
endif
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
	    --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.store_widget_state=False \
	    "$$nb" || exit 1; done

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

# A wheel for everything in requirements.txt and for this project (with the setuptools that
# builds its editable install), for this machine's OS, CPU and Python minor version only.
# Another platform: docs/WORKSHOP.md (pip download --platform ... --only-binary=:all:).
wheelhouse: | $(BIN)/python
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(WHEELHOUSE_DIR) -r requirements.txt \
	  "setuptools>=77" .
	@$(BIN)/python -c 'import sys, platform; print("$(WHEELHOUSE_DIR)/ serves", platform.system(), \
	  platform.machine(), "Python %d.%d only" % sys.version_info[:2])' | tee $(WHEELHOUSE_DIR)/PLATFORM
	@echo "$$(ls $(WHEELHOUSE_DIR)/*.whl | wc -l) wheels, $$(du -sh $(WHEELHOUSE_DIR) | cut -f1)" \
	  "in $(WHEELHOUSE_DIR)/; attendees: make lab WHEELHOUSE=path/to/$(WHEELHOUSE_DIR)"

# Runs the file, not `python -m helpers doctor`, so that every line prints even when
# `import helpers` (which imports Keras) is what is broken.
doctor:
	@test -x $(BIN)/python || { echo "no $(VENV)/ yet: run make lab (offline:" \
	  "make lab WHEELHOUSE=path) first"; exit 1; }
	@$(BIN)/python helpers/doctor.py

# The offline install, as an attendee's laptop does it: a fresh venv, pip isolated from this
# machine's configuration and --no-index, so it cannot pass by finding wheels elsewhere; then the
# doctor there, from another folder (so the installed wheel is what runs) with a fresh weights
# cache (so the conversion is proved too).
test-wheelhouse: wheelhouse
	rm -rf $(WHEELHOUSE_VENV)
	$(PYTHON) -m venv $(WHEELHOUSE_VENV)
	$(ISOLATED_PIP); $(WHEELHOUSE_VENV)/bin/python -m pip --isolated install --quiet --no-index \
	  --find-links "$(abspath $(WHEELHOUSE_DIR))" -r requirements.txt "gap-cam-helpers[notebooks]"
	scratch=$$(mktemp -d) && cd "$$scratch" && \
	  env -u PYTHONPATH GAPCAM_OFFLINE=1 GAPCAM_CACHE_DIR="$$scratch/cache" \
	  "$(abspath $(WHEELHOUSE_VENV))/bin/python" -m helpers doctor --prepare; \
	  status=$$?; rm -rf "$$scratch"; exit $$status

clean:
	rm -rf $(VENV) $(WHEELHOUSE_VENV) .pytest_cache

# The explorer with ipywidgets 7.7.x (requirements.txt allows >=7.7,<9; the venv has 8.x):
# ipywidgets 7.7.1 and its two front-end packages laid over the venv with pip --target (no second
# venv: a few MB, installed once), then the widget tests with it first on the path.
WIDGETS7 := $(VENV)/ipywidgets7
.PHONY: test-widgets7
$(WIDGETS7)/.installed: $(STAMP)
	rm -rf $(WIDGETS7)
	$(BIN)/python -m pip install --quiet --no-deps --target $(WIDGETS7) "ipywidgets==7.7.1" \
	  "widgetsnbextension==3.6.*" "jupyterlab-widgets==1.*" "ipython_genutils==0.2.*"
	touch $@

test-widgets7: setup $(WIDGETS7)/.installed
	GAPCAM_OFFLINE=1 PYTHONPATH=$(abspath $(WIDGETS7))$${PYTHONPATH:+:$$PYTHONPATH} \
	  $(BIN)/python -m pytest tests/test_widgets.py -p no:cacheprovider -W ignore::DeprecationWarning
