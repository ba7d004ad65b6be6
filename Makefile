# Two commands do all set-up on a fresh machine (network needed only for the package registries):
#   make lab    create .venv, install, prepare the offline model, open JupyterLab
#   make test   the same set-up, then everything CI checks on this venv (offline)
# `make help` lists every target with what it does: the "## ..." comment on its line.
# Workshops: docs/WORKSHOP.md. All are idempotent: set-up steps rerun only when a requirements
# file or pyproject.toml change.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
BROWSER_STAMP := $(VENV)/.browser-installed
# $(call pytest_on,PYTHON): pytest, offline, on that interpreter; NBVAL: the notebooks under nbval
# (test-notebooks, test-colab). Tests marked jax (pytestmark = pytest.mark.jax) run a second time
# on the JAX backend; tests marked slow are left out by test-fast (markers: pyproject.toml).
pytest_on = GAPCAM_OFFLINE=1 $(1) -m pytest -p no:cacheprovider
NBVAL := notebooks/ --nbval-lax --nbval-current-env --nbval-cell-timeout=600
# `make bench` first waits (up to this many seconds) for a 1-minute load average below 0.7.
BENCH_WAIT ?= 600
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

.PHONY: help setup lab test test-fast lint test-unit test-jax test-notebooks model \
  execute-notebooks bench clean wheelhouse doctor test-wheelhouse test-browser test-lowest \
  test-highest test-colab

# Every target whose line ends in "## what it does", in the order of this file.
help: ## list the targets and what they do
	@awk 'BEGIN { FS = ":.*## " } /^[A-Za-z0-9_.-]+:.*## / { printf "make %-22s %s\n", $$1, $$2 }' \
	  $(MAKEFILE_LIST)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; \
	  sys.exit(0 if (3, 10) <= v <= (3, 13) else "Python 3.10-3.13 is needed, found %d.%d; run make PYTHON=python3.12 ..." % v)'
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

setup: $(STAMP) model ## create .venv, install the requirements and prepare the offline model

# Converts the packaged torch weights to a Keras weights file once; checks the cache otherwise.
model: $(STAMP) ## convert the packaged weights to a Keras weights file (once)
	@$(BIN)/python -m helpers prepare

# Root (containers) must say --allow-root; LAB_ARGS passes more options, e.g. LAB_ARGS=--no-browser
LAB_ARGS ?=
# No kernel is registered: JupyterLab from .venv runs the notebooks on its own "python3" kernel,
# which is the name the notebooks carry (Colab and Binder know only that one). A "gap-cam" kernel
# left by an older version of this Makefile: jupyter kernelspec remove gap-cam
lab: setup ## set up .venv and open the series in JupyterLab (LAB_ARGS=..., WHEELHOUSE=path)
	env -u MPLBACKEND $(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) \
	  $(LAB_ARGS)

# Its parts run in this order (lint first: it takes seconds); each is also a target of its own.
test: lint test-unit test-notebooks test-jax ## set up, lint, every test and notebook, the jax tests on JAX
	@echo "make test: lint, unit tests, notebooks and JAX tests passed"

test-fast: setup ## the unit tests not marked slow (the edit-test loop; make test runs all)
	$(call pytest_on,$(BIN)/python) tests/ -m "not slow"

lint: $(STAMP) ## ruff check (rules: pyproject.toml [tool.ruff])
	$(BIN)/ruff check helpers tests benchmarks experiments

test-unit: setup ## every unit test (tests/) on the TensorFlow backend
	$(call pytest_on,$(BIN)/python) tests/

test-jax: setup ## the tests marked jax, on the JAX backend
	KERAS_BACKEND=jax $(call pytest_on,$(BIN)/python) tests/ -m jax

test-notebooks: setup ## every notebook under nbval, offline
	$(call pytest_on,$(BIN)/python) $(NBVAL)

# Re-execute every notebook from a clean kernel and save its outputs (what gets committed).
execute-notebooks: setup ## re-execute every notebook from a clean kernel and save its outputs
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
bench: setup $(BENCH_STAMP) ## time CAM against classification and its peers, the resource cases, the notebooks
	GAPCAM_OFFLINE=1 $(BIN)/python benchmarks/bench_cam.py --wait-for-quiet $(BENCH_WAIT)
	GAPCAM_OFFLINE=1 $(BIN)/python benchmarks/bench_resources.py
	env -u KERAS_BACKEND GAPCAM_OFFLINE=1 $(BIN)/python benchmarks/time_notebooks.py \
	  --wait-for-quiet $(BENCH_WAIT)

$(BROWSER_STAMP): requirements-browser.txt $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-browser.txt
	touch $@

# Notebook 03's explorer in JupyterLab + Chromium, driven by Playwright (tests/browser/): runs all
# cells, moves the class slider with key presses, checks that the picture changes, records the
# input-to-picture latency (benchmarks/results/browser_explorer.json, never asserted), restarts
# the kernel and checks what the page shows. Uses the system's Chromium (CHROMIUM=path to choose
# one); as root, installs Debian's when it is missing.
CHROMIUM ?= $(firstword $(foreach candidate,chromium chromium-browser,$(shell command -v $(candidate) 2>/dev/null)))
test-browser: setup $(BROWSER_STAMP) ## notebook 03's explorer in JupyterLab + Chromium (Playwright)
ifeq ($(strip $(CHROMIUM)),)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	  echo "no Chromium: installing Debian's (apt-get install chromium)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "make test-browser needs Chromium, and none was found on PATH. Install it:" \
	  "sudo apt-get install chromium (Debian; Ubuntu: sudo snap install chromium)," \
	  "or pass CHROMIUM=/path/to/chromium"; exit 1; fi
endif
	env -u MPLBACKEND GAPCAM_OFFLINE=1 GAPCAM_BROWSER_TEST=1 $(BROWSER_ENV) \
	  CHROMIUM="$(or $(CHROMIUM),$$(command -v chromium))" \
	  $(BIN)/python -m pytest tests/browser -p no:cacheprovider -s

# A whole Binder session (README "Binder"): JupyterLab's server and the six notebooks one after
# another in a real 2 GiB memory cgroup (root needed), each kernel left running, Binder's
# variables set; fails on any OOM kill. BINDER_CPUS=0 pins the session to one CPU, as Binder
# gives. What it measured goes to benchmarks/results/binder_session.json.
BINDER_CPUS ?=
.PHONY: test-binder
test-binder: setup ## the six notebooks in one Jupyter server inside a 2 GiB memory cgroup, as on Binder
	env -u MPLBACKEND GAPCAM_OFFLINE=1 GAPCAM_BINDER_TEST=1 GAPCAM_BINDER_CPUS=$(BINDER_CPUS) \
	  $(BIN)/python -m pytest tests/binder -p no:cacheprovider -s

# A wheel for everything in requirements.txt and for this project (with the setuptools that
# builds its editable install), for this machine's OS, CPU and Python minor version only.
# Another platform: docs/WORKSHOP.md (pip download --platform ... --only-binary=:all:).
wheelhouse: | $(BIN)/python ## wheels for an offline workshop install: make lab WHEELHOUSE=wheelhouse
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(WHEELHOUSE_DIR) -r requirements.txt \
	  "setuptools>=77" .
	@$(BIN)/python -c 'import sys, platform; print("$(WHEELHOUSE_DIR)/ serves", platform.system(), \
	  platform.machine(), "Python %d.%d only" % sys.version_info[:2])' | tee $(WHEELHOUSE_DIR)/PLATFORM
	@echo "$$(ls $(WHEELHOUSE_DIR)/*.whl | wc -l) wheels, $$(du -sh $(WHEELHOUSE_DIR) | cut -f1)" \
	  "in $(WHEELHOUSE_DIR)/; attendees: make lab WHEELHOUSE=path/to/$(WHEELHOUSE_DIR)"

# Runs the file, not `python -m helpers doctor`, so that every line prints even when
# `import helpers` (which imports Keras) is what is broken.
doctor: ## pre-flight check: one green/red line per item, exit status 1 if any is red
	@test -x $(BIN)/python || { echo "no $(VENV)/ yet: run make lab (offline:" \
	  "make lab WHEELHOUSE=path) first"; exit 1; }
	@$(BIN)/python helpers/doctor.py

# The offline install, as an attendee's laptop does it: a fresh venv, pip isolated from this
# machine's configuration and --no-index, so it cannot pass by finding wheels elsewhere; then the
# doctor there, from another folder (so the installed wheel is what runs) with a fresh weights
# cache (so the conversion is proved too).
test-wheelhouse: wheelhouse ## make wheelhouse, install it offline into a fresh venv, run the doctor there
	rm -rf $(WHEELHOUSE_VENV)
	$(PYTHON) -m venv $(WHEELHOUSE_VENV)
	$(ISOLATED_PIP); $(WHEELHOUSE_VENV)/bin/python -m pip --isolated install --quiet --no-index \
	  --find-links "$(abspath $(WHEELHOUSE_DIR))" -r requirements.txt "gap-cam-helpers[notebooks]"
	scratch=$$(mktemp -d) && cd "$$scratch" && \
	  env -u PYTHONPATH GAPCAM_OFFLINE=1 GAPCAM_CACHE_DIR="$$scratch/cache" \
	  "$(abspath $(WHEELHOUSE_VENV))/bin/python" -m helpers doctor --prepare && \
	  env -u PYTHONPATH "$(abspath $(WHEELHOUSE_VENV))/bin/python" -c 'from helpers.data import \
	  records as r; n = [r.recorded(p.stem) and p.stem for p in r.RECORDS.glob("*.json")]; \
	  print(len(n), "recorded runs in the wheel"); assert len(n) == $(words $(wildcard helpers/data/records/*.json)), n'; \
	  status=$$?; rm -rf "$$scratch"; exit $$status

# The declared ranges, tested at both ends (README "Versions"). Each stack gets its own venv,
# installed by uv (its resolver can pick the lowest versions; it reads no pip configuration),
# then the whole of `make test` runs there. LOWEST_PY / HIGHEST_PY are the ends of
# requires-python in pyproject.toml (tests/test_repository.py checks that they agree).
LOWEST_PY  ?= 3.10
HIGHEST_PY ?= 3.13
LOWEST_VENV  ?= .venv-lowest
HIGHEST_VENV ?= .venv-highest
# The first pythonX.Y that runs: on PATH, else under pyenv (whose shims exist on PATH but fail
# when that version is not selected).
PYENV_ROOT ?= $(HOME)/.pyenv
find_python = $(firstword $(foreach candidate,python$(1) \
  $(sort $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1))),\
  $(shell $(candidate) -c 'import sys; sys.exit(sys.version_info[:2] != ($(subst .,$(comma),$(1))))' \
  >/dev/null 2>&1 && echo $(candidate))))
comma := ,
# uv: the one on PATH, else installed into the stack's venv by its own pip.
UV ?= $(shell command -v uv 2>/dev/null)

# $(1): venv, $(2): Python X.Y, $(3): uv's --resolution (lowest-direct or highest). It also
# touches $(1)/.installed, the stamp that `make test VENV=$(1)` checks, so that make test does
# not reinstall with pip what uv chose.
define stack_install
	@test -n "$(call find_python,$(2))" || { echo "Python $(2) is needed for this target and was" \
	  "not found (neither python$(2) on PATH nor under $(PYENV_ROOT)/versions). Get it with" \
	  "pyenv install $(2) (https://github.com/pyenv/pyenv), or your system's package" \
	  "(e.g. apt-get install python$(2)-venv), or uv python install $(2)."; exit 1; }
	rm -rf $(1)
	$(call find_python,$(2)) -m venv $(1)
	$(if $(UV),,$(1)/bin/python -m pip install --quiet uv)
	$(or $(UV),$(1)/bin/python -m uv) pip install --quiet --python $(1)/bin/python \
	  --resolution $(3) -r requirements.txt -r requirements-test.txt
	$(or $(UV),$(1)/bin/python -m uv) pip install --quiet --python $(1)/bin/python --no-deps -e .
	@$(1)/bin/python -c 'import sys, importlib.metadata as m; print("Python %d.%d.%d" % sys.version_info[:3], \
	  *("%s %s" % (n, m.version(n)) for n in ("tensorflow", "keras", "numpy", "jax", "scipy", \
	  "matplotlib", "scikit-image", "scikit-learn", "ipywidgets", "jupyterlab", "nbval")))'
	touch $(1)/.installed $(1)/.stack-installed
endef

$(LOWEST_VENV)/.stack-installed: requirements.txt requirements-test.txt pyproject.toml
	$(call stack_install,$(LOWEST_VENV),$(LOWEST_PY),lowest-direct)

$(HIGHEST_VENV)/.stack-installed: requirements.txt requirements-test.txt pyproject.toml
	$(call stack_install,$(HIGHEST_VENV),$(HIGHEST_PY),highest)

test-lowest: $(LOWEST_VENV)/.stack-installed ## make test at the lowest allowed versions and Python
	$(MAKE) --no-print-directory test VENV=$(LOWEST_VENV)

test-highest: $(HIGHEST_VENV)/.stack-installed ## make test at the newest allowed versions and Python
	$(MAKE) --no-print-directory test VENV=$(HIGHEST_VENV)

# Colab's runtime as published (README "Colab", colab/README.md): Python 3.13, and Colab's own
# `pip freeze` (COLAB_FREEZE) used as constraints, less its URL/local-file and nvidia-* lines, for
# what requirements-colab.txt names ("preinstalled"). Then this project installed as the
# notebooks' Colab cell installs it (here from the working tree instead of GitHub, with no
# constraints); that install must leave every preinstalled package as it was. Then every notebook
# under nbval and the explorer's widget tests in that venv.
COLAB_PY     ?= 3.13
COLAB_VENV   ?= .venv-colab
COLAB_FREEZE ?= colab/pip-freeze-cpu-2026-08-19.txt
$(COLAB_VENV)/.stack-installed: requirements-colab.txt $(COLAB_FREEZE) pyproject.toml
	@test -n "$(call find_python,$(COLAB_PY))" || { echo "Python $(COLAB_PY) is needed for" \
	  "make test-colab and was not found; get it with pyenv install $(COLAB_PY)"; exit 1; }
	rm -rf $(COLAB_VENV)
	$(call find_python,$(COLAB_PY)) -m venv $(COLAB_VENV)
	grep -v -e ' @ ' -e '^-e ' -e '^nvidia-' $(COLAB_FREEZE) > $(COLAB_VENV)/constraints.txt
	$(COLAB_VENV)/bin/python -m pip install --quiet -c $(COLAB_VENV)/constraints.txt pip
	$(COLAB_VENV)/bin/python -m pip install --quiet -c $(COLAB_VENV)/constraints.txt -r requirements-colab.txt
	$(COLAB_VENV)/bin/python -m pip freeze --exclude-editable | sort > $(COLAB_VENV)/preinstalled.txt
	$(COLAB_VENV)/bin/python -m pip install --quiet .
	$(COLAB_VENV)/bin/python -m pip freeze | sort | comm -23 $(COLAB_VENV)/preinstalled.txt - \
	  > $(COLAB_VENV)/replaced.txt
	@test ! -s $(COLAB_VENV)/replaced.txt || { echo "installing the package replaced these" \
	  "preinstalled packages:"; cat $(COLAB_VENV)/replaced.txt; exit 1; }
	@$(COLAB_VENV)/bin/python -c 'import sys, importlib.metadata as m; print("Python %d.%d.%d" % sys.version_info[:3], \
	  *("%s %s" % (n, m.version(n)) for n in ("tensorflow", "keras", "numpy", "scipy", "matplotlib", \
	  "scikit-image", "scikit-learn", "ipywidgets", "ipykernel", "jupyter_client", "traitlets", "nbval")))'
	@$(COLAB_VENV)/bin/python -c 'import re, sys, importlib.metadata as m; \
	  pins = dict(l.strip().split("==", 1) for l in open(sys.argv[1]) if "==" in l); \
	  norm = lambda n: re.sub(r"[-_.]+", "-", n).lower(); pins = {norm(k): v for k, v in pins.items()}; \
	  have = {norm(d.metadata["Name"]): d.version for d in m.distributions()}; \
	  off = sorted(n for n in have if n in pins and have[n] != pins[n]); \
	  print(len(have), "packages installed,", sum(n in pins for n in have), "at the version of Colab'"'"'s freeze;", \
	  len(off), "differ:", ", ".join(off) or "none")' $(COLAB_VENV)/constraints.txt
	touch $@

test-colab: $(COLAB_VENV)/.stack-installed ## every notebook and the widget tests on Colab's published stack (Python 3.13)
	$(COLAB_VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall .
	$(call pytest_on,$(COLAB_VENV)/bin/python) $(NBVAL)
	$(call pytest_on,$(COLAB_VENV)/bin/python) tests/test_widgets.py -W ignore::DeprecationWarning

clean: ## remove every venv this Makefile makes
	rm -rf $(VENV) $(WHEELHOUSE_VENV) $(LOWEST_VENV) $(HIGHEST_VENV) $(COLAB_VENV) .pytest_cache

# The explorer with ipywidgets 7.7.1, Colab's (requirements.txt allows >=7.7.2,<9; the venv has 8.x):
# ipywidgets 7.7.1 and its two front-end packages laid over the venv with pip --target (no second
# venv: a few MB, installed once), then the widget tests with it first on the path.
WIDGETS7 := $(VENV)/ipywidgets7
.PHONY: test-widgets7
$(WIDGETS7)/.installed: $(STAMP)
	rm -rf $(WIDGETS7)
	$(BIN)/python -m pip install --quiet --no-deps --target $(WIDGETS7) "ipywidgets==7.7.1" \
	  "widgetsnbextension==3.6.*" "jupyterlab-widgets==1.*" "ipython_genutils==0.2.*"
	touch $@

test-widgets7: setup $(WIDGETS7)/.installed ## the explorer's tests with ipywidgets 7.7.1 (Colab's)
	PYTHONPATH=$(abspath $(WIDGETS7))$${PYTHONPATH:+:$$PYTHONPATH} \
	  $(call pytest_on,$(BIN)/python) tests/test_widgets.py -W ignore::DeprecationWarning

# The same browser test with ipywidgets 7.7.1 in the kernel and its JupyterLab front end,
# jupyterlab_widgets 1.1 (jupyterlab-manager 3.x, made for JupyterLab 3 and 4), both from
# test-widgets7's overlay (JUPYTER_PATH finds its extension before the venv's 5.x, which renders
# only ipywidgets 8). Its latency goes to browser_explorer_widgets7.json.
.PHONY: test-browser-widgets7
test-browser-widgets7: $(WIDGETS7)/.installed ## the browser test with ipywidgets 7.7.1 and its front end
	$(MAKE) --no-print-directory test-browser BROWSER_ENV="PYTHONPATH=$(abspath $(WIDGETS7)) \
	  JUPYTER_PATH=$(abspath $(WIDGETS7))/share/jupyter \
	  GAPCAM_BROWSER_RESULTS=$(abspath benchmarks/results/browser_explorer_widgets7.json)"
